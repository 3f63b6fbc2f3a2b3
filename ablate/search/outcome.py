"""What a study's trials came to, Ray-free: the driver fills these from Tune's results and
`ablate search` prints its summary from them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialOutcome:
    trial_id: str
    name: str
    status: str  # completed | pruned | failed
    epochs: int
    params: dict[str, Any]
    metrics: dict[str, float]  # the seed mean of every metric at the last reported epoch
    error: str = ""
    node: str = ""  # the Ray node id the trial last ran on


@dataclass
class StudyOutcome:
    trials: list[TrialOutcome] = field(default_factory=list)
    stopped_early: bool = False  # every trial so far failed

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.trials)


def trial_name(number: int | None) -> str:
    """Optuna's trial number 7 -> `t007`: names that sort in the order trials were sampled."""
    return "t???" if number is None else f"t{number:03d}"


def error_line(text: str) -> str:
    """The line of a traceback that names the exception (`TrainingDiverged: loss became nan`)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Diverged|Failed|Interrupt)\b", line):
            return line
    return lines[-1] if lines else "unknown error"


def status_of(ray_status: str | None, result: Any, reached: int, epochs: int) -> str:
    if result.error or ray_status == "ERROR":
        return "failed"
    if ray_status != "TERMINATED":
        return "unfinished"  # the study was interrupted while this trial ran or waited
    return "completed" if reached >= epochs else "pruned"
