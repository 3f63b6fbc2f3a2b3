"""MLflow lives here and only here.

One experiment per study; a parent run per study invocation (spec file, hash and plan), a child
run per trial (resolved config as params, seed-mean metrics per epoch), and a grandchild run per
seed (its own metrics per epoch and its learned prompts). Every call names its run explicitly
(`MlflowClient`, never the thread-global active run) and metrics go in `log_batch` requests.

Statuses: the tag `ablate.status` is `completed`, `pruned` (with `ablate.stopped_epoch`) or
`failed` (with `ablate.error`, and the traceback as `error.txt`), so the runs list filters on them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

ROLE = "ablate.role"  # study | trial | seed
STATUS = "ablate.status"
TRIAL_ID = "ablate.trial_id"
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's per-request limits for log_batch
RUN_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else MLflow's own default: SQLite `mlflow.db` in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


@dataclass
class Tracker:
    """A handle that pickles cheaply into Ray workers: the URI, the experiment and parent run."""

    uri: str
    experiment_id: str = ""
    parent_run_id: str = ""

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri)

    # ---- study ------------------------------------------------------------------------------
    def start_study(
        self, name: str, description: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> Tracker:
        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(name, tags={MLFLOW_RUN_NOTE: description})
        else:
            experiment_id = experiment.experiment_id
        run = client.create_run(
            experiment_id,
            run_name=f"study {name} {time.strftime('%Y-%m-%d %H:%M')}",
            tags={ROLE: "study", MLFLOW_RUN_NOTE: description, **tags},
        )
        handle = Tracker(self.uri, experiment_id, run.info.run_id)
        handle.log_params(run.info.run_id, params)
        return handle

    def log_study_file(self, local_path: str | Path) -> None:
        self.client.log_artifact(self.parent_run_id, str(local_path))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, _safe_name(name))

    def finish_study(self, counts: Mapping[str, int], status: str = "completed") -> None:
        client = self.client
        tags = [RunTag(STATUS, status)] + [RunTag(f"ablate.{k}", str(v)) for k, v in counts.items()]
        client.log_batch(self.parent_run_id, tags=tags)
        client.set_terminated(self.parent_run_id, RUN_STATUS.get(status, "FINISHED"))

    # ---- trials and seeds ---------------------------------------------------------------------
    def start_run(
        self,
        parent_id: str,
        name: str,
        role: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        """A nested run under `parent_id` with its params; returns its run id."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={MLFLOW_PARENT_RUN_ID: parent_id, ROLE: role, STATUS: "running", **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), MAX_METRICS):
            self.client.log_batch(run_id, metrics=items[start : start + MAX_METRICS])

    def log_file(self, run_id: str, local_path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_path), folder)

    def log_bytes(self, run_id: str, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / _safe_name(name)
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path))

    def finish_run(self, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        """Set the ablate status tag (and extra tags) and terminate the run."""
        client = self.client
        client.log_batch(
            run_id, tags=[RunTag(STATUS, status)] + [RunTag(k, v) for k, v in (tags or {}).items()]
        )
        client.set_terminated(run_id, RUN_STATUS[status])

    # ---- lookups for the driver ----------------------------------------------------------------
    def runs_of_trial(self, trial_id: str) -> list[Any]:
        """The trial run and its seed runs, found by the Ray trial id tag."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TRIAL_ID}` = '{trial_id}' "
            f"and tags.`{MLFLOW_PARENT_RUN_ID}` != ''",
            max_results=1000,
        )

    def children(self, parent_id: str, role: str | None = None) -> list[Any]:
        flt = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'"
        if role:
            flt += f" and tags.`{ROLE}` = '{role}'"
        return self.client.search_runs([self.experiment_id], filter_string=flt, max_results=5000)


def run_name(trial_name: str, params: Mapping[str, Any]) -> str:
    """`t007 num_experts=8 lr=0.0031`: the last part of each dotted key, values shortened."""
    parts = [f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in sorted(params.items())]
    return " ".join([trial_name, *parts])[:250]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")[:24]


def _param_value(value: Any) -> str:
    return str(value)[:6000]  # MLflow's param value limit


def _safe_name(name: str) -> str:
    """An artifact file name that cannot leave its folder."""
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return clean or "artifact"


def tags_of(runs: Iterable[Any], key: str) -> list[str]:
    return [r.data.tags.get(key, "") for r in runs]
