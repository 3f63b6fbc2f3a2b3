"""Where a study's report reads from: its folder (copied from shared storage when it lives
there), its study.json, and the metric, goal and distributions logged to its MLflow parent run."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate import results
from ablate.errors import AblateError
from ablate.search.resume import load_state

OBJECTIVE = re.compile(r"(\S+) \((maximize|minimize)\)")  # `val/hm (maximize), cost/params ...`


@dataclass
class StudyInfo:
    """Where a study's table and runs are, and what it optimised."""

    name: str
    folder: Path
    uri: str | None = None
    experiment_id: str = ""
    parent_run_id: str = ""
    metric: str = "val/hm"  # the first objective
    goal: str = "maximize"
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (name, goal), all of them
    method: str = ""
    distributions: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] | None = None  # the spec's scheduler: its rungs (None: unknown)
    notes: list[str] = field(default_factory=list)


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
    spelled = params.get("study.metric", "val/hm (maximize)")  # spec.objectives_text
    info.objectives = OBJECTIVE.findall(spelled) or [(spelled.split(" ")[0], "maximize")]
    info.metric, info.goal = info.objectives[0]
    info.method = params.get("study.method", "")
    info.distributions = _spec_distributions(info, params.get("study.file", ""))


def _spec_distributions(info: StudyInfo, spec_file: str) -> dict[str, Any]:
    """The searched distributions of the spec logged to the parent run ({} if unreadable);
    its scheduler too (into info.scheduler), for the rungs the report analyses pruned trials at."""
    from dataclasses import asdict

    from ablate import tracking
    from ablate.search import space
    from ablate.spec import load

    if not spec_file:
        info.notes.append("the parent run names no spec file (study.file): distributions inferred")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        local = tracking.download(
            info.uri or "", info.parent_run_id, Path(spec_file).name, Path(tmp)
        )
        try:
            spec = load(local or spec_file)
        except Exception as err:
            info.notes.append(f"spec unavailable ({type(err).__name__}): distributions inferred")
            return {}
    info.scheduler = asdict(spec.scheduler)
    return space.to_distributions(spec.search_parameters())
