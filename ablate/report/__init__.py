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

from ablate.errors import ReportError
from ablate.report import paper
from ablate.report.inputs import StudyInfo, resolve
from ablate.report.summary import Analysis, analyse

REPORT_DIR = "report"
COMPARISONS = "comparisons"  # RESULTS_DIR/comparisons/A+B/: `ablate report A B`
__all__ = [
    "Analysis",
    "StudyInfo",
    "analyse",
    "cmd_compare",
    "cmd_report",
    "compare",
    "make_report",
    "resolve",
]


def cmd_report(args: argparse.Namespace) -> int:
    [study] = args.study
    info = resolve(study, args.results_dir, args.tracking_uri, not args.no_mlflow)
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


def cmd_compare(args: argparse.Namespace) -> int:
    """`ablate report A B ...`: the studies' best configurations side by side, per dataset."""
    infos = [resolve(s, args.results_dir, args.tracking_uri, False) for s in args.study]
    out = Path(args.results_dir, COMPARISONS, "+".join(i.name for i in infos))
    table = compare(infos, out)
    print(paper.to_markdown(table), end="")
    print(f"ablate: comparison of {len(infos)} studies in {out} (paper.md, paper.tex)")
    return 0


def compare(infos: list[StudyInfo], out: Path) -> paper.PaperTable:
    """Write paper.md and paper.tex of the studies' best configurations into `out`."""
    blocks, metrics = [], []
    for info in infos:
        data = analyse(info)
        if data.best is None:
            raise ReportError(f"study {info.name!r} has no completed trial to compare yet")
        blocks.append(paper.Block(info.name, data.best))
        metrics = metrics or data.table.metrics  # the first study's split and columns
    what = "each study's best configuration by its own metric; Δ against the first study"
    table = paper.paper_table(blocks, metrics, what)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper.md").write_text(paper.to_markdown(table), encoding="utf-8")
    (out / "paper.tex").write_text(paper.to_latex(table, out.name), encoding="utf-8")
    return table


def _log(info: StudyInfo, out: Path) -> None:
    from ablate import tracking

    try:
        tracking.log_folder(info.uri or "", info.parent_run_id, out, REPORT_DIR)
    except Exception as err:
        info.notes.append(f"could not log the report to MLflow ({type(err).__name__}: {err})")
