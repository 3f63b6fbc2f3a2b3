"""One exception root. Exit codes: 0 ok, 1 failure, 2 bad input."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path


class AblateError(Exception):
    exit_code = 1


@dataclass
class Problem:
    """One thing wrong with the user's input: where, which key, and why."""

    file: str
    key: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class SpecError(AblateError):
    """The search-space file (or its overrides) is invalid; every problem is listed."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(AblateError):
    """A set of overrides does not compose into a valid trial config."""

    exit_code = 2


class TrialFailed(AblateError):
    """A trial raised; the study records it and goes on."""


class ReportError(AblateError):
    """A study cannot be reported as asked (e.g. nothing completed to compare yet)."""


class DiskFull(AblateError):
    """A write found no space left on the device: the study stops cleanly and resumes when
    space is freed (docs/reliability.md)."""

    def __init__(self, path: object, detail: str = "") -> None:
        self.path = str(path)
        super().__init__(f"disk full: {self.path}" + (f" ({detail})" if detail else ""))


# how ENOSPC reads in an OSError, a pyarrow error ("[errno 28]") and SQLite
_NO_SPACE = ("no space left on device", "[errno 28]", "database or disk is full")


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` says the device is full (ENOSPC), however the library worded it."""
    if isinstance(err, DiskFull) or getattr(err, "errno", None) == errno.ENOSPC:
        return True
    return any(marker in str(err).lower() for marker in _NO_SPACE)


class UnknownStudy(AblateError):
    """A study (or a tracking store) that does not exist; the message names those that do."""

    exit_code = 2

    def __init__(self, missing: str, known: list[str], where: str, hint: str = "") -> None:
        listing = ", ".join(known) if known else "none"
        text = f"{missing}; studies {where}: {listing}"
        super().__init__(text + (f"\n{hint}" if hint else ""))


def local_studies(results_dir: Path) -> list[str]:
    """The studies `ablate search` left under `results_dir` (folders with a study.json or a
    results table), by name."""
    if not results_dir.is_dir():
        return []
    marks = ("study.json", "results.parquet", "parts")
    return sorted(
        d.name for d in results_dir.iterdir() if any((d / mark).exists() for mark in marks)
    )
