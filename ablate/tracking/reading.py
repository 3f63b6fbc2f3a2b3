"""A study's runs read back (`ablate report`, `ablate ui`) and the report logged beside them,
through the tracker's client (`runs` is the one module that imports MLflow)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ablate.tracking.runs import ROLE, TRIAL_KEY, Tracker, seed_of


def _client(uri: str) -> Any:
    return Tracker(uri).client


def study_names(uri: str) -> list[str]:
    """The experiments (one per study) a tracking store holds."""
    experiments = _client(uri).search_experiments()
    return sorted(e.name for e in experiments if e.name != "Default")


def latest_study_run(uri: str, study: str | None) -> tuple[str, str] | None:
    """(experiment id, parent run id) of the newest study run, of `study` or of any study."""
    client = _client(uri)
    if study:
        experiment = client.get_experiment_by_name(study)
        if experiment is None:
            return None
        ids = [experiment.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(
        ids, filter_string=f"tags.`{ROLE}` = 'study'", order_by=["start_time DESC"], max_results=1
    )
    return (runs[0].info.experiment_id, runs[0].info.run_id) if runs else None


def run_params(uri: str, run_id: str) -> dict[str, str]:
    return dict(_client(uri).get_run(run_id).data.params)


def download(uri: str, run_id: str, path: str, folder: Path) -> Path | None:
    """One artifact file of a run into `folder`; None when the run does not have it (MLflow
    then returns the empty destination folder instead of raising)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = Path(_client(uri).download_artifacts(run_id, path, str(folder)))
    except Exception:
        return None
    return local if local.is_file() else None


def seed_runs(uri: str, experiment_id: str, trial_key: str) -> dict[int, str]:
    """seed -> run id of the seed runs of one configuration (any invocation of the study)."""
    runs = _client(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRIAL_KEY}` = '{trial_key}' and tags.`{ROLE}` = 'seed'",
        max_results=1000,
    )
    return {seed: r.info.run_id for r in runs if (seed := seed_of(r)) is not None}


def log_folder(uri: str, run_id: str, folder: Path, artifact_path: str) -> None:
    """Every file under `folder` as artifacts of `run_id` under `artifact_path` (replacing the
    files of an earlier report with the same names)."""
    _client(uri).log_artifacts(run_id, str(folder), artifact_path)
