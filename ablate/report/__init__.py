"""`ablate report STUDY`: the analysis of a finished (or running) study, from its Parquet table.

Writes results/<study>/report/ (ablation table as Markdown, LaTeX and CSV; factor effects and
parameter importance; learning curves, parallel coordinates and factor-effect plots as PNG; one
self-contained report.html) and logs that folder to the study's MLflow parent run under
report/. It also rebuilds the Optuna study behind the search from the table into
results/<study>/optuna.db (study name = the study name) for `optuna-dashboard`: Ray's searcher
keeps its Optuna study in memory, so the table is the durable source. See docs/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ablate.report.inputs import StudyInfo, resolve
from ablate.report.summary import Analysis, analyse

REPORT_DIR = "report"
__all__ = ["Analysis", "StudyInfo", "analyse", "cmd_report", "make_report", "resolve"]


def cmd_report(args: argparse.Namespace) -> int:
    info = resolve(args.study, args.results_dir, args.tracking_uri, not args.no_mlflow)
    folder = make_report(info, args.importance)
    print(f"ablate: report of {info.name!r} in {folder} (open {folder / 'report.html'})")
    for line in info.notes:
        print(f"ablate: note: {line}")
    return 0


def make_report(info: StudyInfo, evaluator: str = "fanova") -> Path:
    """Write every file of the report, rebuild optuna.db, log the folder to MLflow."""
    from ablate.report import page  # matplotlib and Optuna: only when a report is written

    data = analyse(info)
    out = info.folder / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    page.write(data, out, evaluator)
    if info.uri and info.parent_run_id:
        _log(info, out)
    return out


def _log(info: StudyInfo, out: Path) -> None:
    from ablate import tracking

    try:
        tracking.log_folder(info.uri or "", info.parent_run_id, out, REPORT_DIR)
    except Exception as err:
        info.notes.append(f"could not log the report to MLflow ({type(err).__name__}: {err})")
