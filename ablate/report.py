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
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate import analysis, results
from ablate.analysis import Config
from ablate.errors import AblateError
from ablate.resume import load_state
from ablate.tables import AblationTable

REPORT_DIR = "report"
OPTUNA_FILE = "optuna.db"


@dataclass
class StudyInfo:
    """Where a study's table and runs are, and what it optimised."""

    name: str
    folder: Path
    uri: str | None = None
    experiment_id: str = ""
    parent_run_id: str = ""
    metric: str = "val/hm"
    goal: str = "maximize"
    method: str = ""
    distributions: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---- command line -------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    info = resolve(args.study, args.results_dir, args.tracking_uri, not args.no_mlflow)
    folder = make_report(info, args.importance)
    print(f"ablate: report of {info.name!r} in {folder} (open {folder / 'report.html'})")
    for line in info.notes:
        print(f"ablate: note: {line}")
    return 0


def resolve(study: str, results_dir: Path, uri: str | None, use_mlflow: bool = True) -> StudyInfo:
    """The study's folder (a name under results_dir, or a path) and its MLflow parent run.
    A study on shared object storage (`s3://bucket/prefix/STUDY`) is copied to results_dir."""
    if results.is_uri(study):
        local = results_dir / study.rstrip("/").rpartition("/")[2]
        results.download(study, [results.RESULTS_FILE, "study.json"], local)
        study = str(local)
    folder = Path(study) if Path(study).is_dir() else results_dir / study
    folder = folder.resolve()
    if not (folder / results.RESULTS_FILE).exists() and not any(folder.glob("parts/*.parquet")):
        error = AblateError(f"{folder} holds no results table; run `ablate search FILE` first")
        error.exit_code = 2
        raise error
    info = StudyInfo(name=folder.name, folder=folder)
    state = load_state(folder)
    if use_mlflow and state is not None:
        info.uri = uri or state.tracking_uri
        info.experiment_id, info.parent_run_id = state.experiment_id, state.parent_run_id
        _read_parent(info)
    elif use_mlflow:
        info.notes.append(f"no study.json in {folder}: MLflow artifacts are not read or logged")
    return info


def _read_parent(info: StudyInfo) -> None:
    """Metric, goal, method and distributions from the parent run's params and spec file."""
    from ablate import tracking

    try:
        params = tracking.run_params(info.uri or "", info.parent_run_id)
    except Exception as err:
        info.notes.append(f"MLflow unreachable ({type(err).__name__}); report kept local")
        info.uri = None
        return
    name, _, goal = params.get("study.metric", "val/hm (maximize)").partition(" ")
    info.metric, info.goal = name, goal.strip("()") or "maximize"
    info.method = params.get("study.method", "")
    info.distributions = _spec_distributions(info, params.get("study.file", ""))


def _spec_distributions(info: StudyInfo, spec_file: str) -> dict[str, Any]:
    """The searched distributions of the spec logged to the parent run ({} if unreadable)."""
    from ablate import space, tracking
    from ablate import spec as specs

    if not spec_file:
        info.notes.append("the parent run names no spec file (study.file): distributions inferred")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        local = tracking.download(
            info.uri or "", info.parent_run_id, Path(spec_file).name, Path(tmp)
        )
        try:
            spec = specs.load(local or spec_file)
        except Exception as err:
            info.notes.append(f"spec unavailable ({type(err).__name__}): distributions inferred")
            return {}
    return space.to_distributions(spec.search_parameters())


# ---- the report ---------------------------------------------------------------------------------
@dataclass
class Analysis:
    """Everything computed from the table, shared by the files and the HTML page."""

    info: StudyInfo
    rows: list[dict[str, Any]]
    params: list[str]
    table: AblationTable
    configs: list[Config]
    best: Config | None
    counts: dict[str, int]


def analyse(info: StudyInfo) -> Analysis:
    rows = results.rows(info.folder)
    params = analysis.parameter_columns(rows)
    final = analysis.final_rows(rows)
    split = analysis.choose_split(final, info.metric)
    metrics = analysis.split_metrics(final, split)
    extra = [info.metric, *analysis.metric_columns(final, "diag/")]
    configs = analysis.configurations(final, params, [*metrics, *extra])
    configs = analysis.order(configs, info.metric, info.goal)
    comparisons = analysis.compare_all(configs, metrics) if configs else []
    ablation = any(c.factors.get(analysis.VARIANT) == "base" for c in configs)
    reference = "the base variant" if ablation else f"the best configuration by {info.metric}"
    table = AblationTable(split, metrics, _shown(configs), configs, comparisons, reference)
    return Analysis(info, rows, params, table, configs, _best(configs, info), _counts(rows))


def _shown(configs: list[Config]) -> list[str]:
    from ablate.tables import shown_factors

    return shown_factors(configs)


def _best(configs: list[Config], info: StudyInfo) -> Config | None:
    ranked = analysis.order(
        [c for c in configs if not math.isnan(c.mean(info.metric))], info.metric, info.goal
    )
    if ranked and ranked[0].factors.get(analysis.VARIANT) == "base":  # ablation: rank by metric
        sign = -1.0 if info.goal == "maximize" else 1.0
        ranked = sorted(ranked, key=lambda c: sign * c.mean(info.metric))
    return ranked[0] if ranked else None


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    status = {r["trial_name"]: r["status"] for r in rows}
    return {s: list(status.values()).count(s) for s in ("completed", "pruned", "failed")}


def make_report(info: StudyInfo, evaluator: str = "fanova") -> Path:
    """Write every file of the report, rebuild optuna.db, log the folder to MLflow."""
    from ablate import report_build

    data = analyse(info)
    out = info.folder / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    report_build.write(data, out, evaluator)
    if info.uri and info.parent_run_id:
        _log(info, out)
    return out


def _log(info: StudyInfo, out: Path) -> None:
    from ablate import tracking

    try:
        tracking.log_folder(info.uri or "", info.parent_run_id, out, REPORT_DIR)
    except Exception as err:
        info.notes.append(f"could not log the report to MLflow ({type(err).__name__}: {err})")


def trial_curves(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """trial name -> {status, key, params, curve: {epoch: seed mean of metric}}."""
    acc: dict[str, dict[str, Any]] = {}
    for row in rows:
        trial = acc.setdefault(
            row["trial_name"],
            {"status": row["status"], "key": row["trial_key"], "row": row, "epochs": {}},
        )
        if row.get(metric) is not None:
            trial["epochs"].setdefault(int(row["epoch"]), []).append(float(row[metric]))
    for trial in acc.values():
        trial["curve"] = {e: sum(v) / len(v) for e, v in sorted(trial["epochs"].items())}
    return dict(sorted(acc.items()))


def describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
