"""What every command shares: the help layout (wrapped to the terminal, at most MAX_WIDTH), the
options several commands take (declared once, one help text each) and the console output of
the `ablate` logger (-q / -v)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

MAX_WIDTH = 100  # help text is wrapped to the terminal, but never wider than this
TRACKING_URI_HELP = (
    "MLflow tracking URI: a server (http://HOST:5000) or a local store (sqlite:///PATH). "
    "Default: for an existing study (sync, report, ui), the URI it ran with; else "
    "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder"
)
RESULTS_DIR_HELP = "folder that holds one folder per study (default: ./results)"
USER_MLFLOW_LEVEL = os.environ.get("MLFLOW_LOGGING_LEVEL")  # the user's choice wins

Commands = Any  # argparse's subparsers action (its class is private to argparse)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions and epilogs to the terminal width (at most MAX_WIDTH) paragraph by
    paragraph; indented lines (examples) stay as they are written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        paragraph: list[str] = []

        def wrap() -> None:
            if paragraph:
                lines.extend(
                    textwrap.wrap(
                        " ".join(paragraph),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
                paragraph.clear()

        for line in text.splitlines():
            if line.strip() and not line[0].isspace():
                paragraph.append(line.strip())
                continue
            wrap()
            lines.append(indent + line if line.strip() else "")
        wrap()
        return "\n".join(lines)


def help_width() -> int:
    return min(shutil.get_terminal_size().columns, MAX_WIDTH) - 2


class Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: the same help layout everywhere (subcommands' parsers take
    their parent's class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


# ---- options several commands take: parent parsers ---------------------------------------------
def tracking_option() -> argparse.ArgumentParser:
    tracking = argparse.ArgumentParser(add_help=False)
    tracking.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)
    return tracking


def results_dir_option() -> argparse.ArgumentParser:
    results_dir = argparse.ArgumentParser(add_help=False)
    results_dir.add_argument(
        "--results-dir", default=Path("results"), type=Path, help=RESULTS_DIR_HELP
    )
    return results_dir


def output_options() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    group = output.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        help="print only the result (a study's summary) and warnings",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=1,
        help="print every detail: Tune's result of every epoch, Ray's and MLflow's own logs",
    )
    return output


# ---- console output ----------------------------------------------------------------------------
class _Stdout(logging.StreamHandler):
    """A handler that writes to whatever sys.stdout is at the time (tests replace it)."""

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_output(verbosity: int) -> None:
    """One `ablate` logger, on stdout: -q (-1) keeps only warnings (the summary is printed
    either way), -v (1) adds the details; MLflow's and Optuna's loggers follow, unless the user
    set MLFLOW_LOGGING_LEVEL."""
    verbosity = max(-1, min(1, verbosity))
    log = logging.getLogger("ablate")
    log.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])
    log.propagate = False
    if not any(isinstance(h, _Stdout) for h in log.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    others = {-1: "ERROR", 0: "WARNING", 1: "INFO"}[verbosity]
    logging.getLogger("optuna").setLevel(others)
    if USER_MLFLOW_LEVEL is None:
        os.environ["MLFLOW_LOGGING_LEVEL"] = others  # read where MLflow is imported (Ray too)
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(others)
