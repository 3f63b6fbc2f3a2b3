"""MLflow lives here and only here: the runs of a study, written and read.

One experiment per study; a parent run per study invocation (spec file, hash and plan), a child
run per trial (resolved config as params, seed-mean metrics per epoch), and a grandchild run per
seed (its own metrics per epoch and its learned prompts). Every call names its run explicitly
(`MlflowClient`, never the thread-global active run) and metrics go in `log_batch` requests.

Statuses: the tag `ablate.status` is `completed`, `pruned` (with `ablate.stopped_epoch`) or
`failed` (with `ablate.error`, and the traceback as `error.txt`), so the runs list filters on them.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from ablate.tracking.retry import PatientClient
from ablate.tracking.spool import (
    deliver_own,
    retry_due,
    spooled,
    spooled_creation,
    spooling,
    start_spooling,
)
from ablate.tracking.stores import artifact_home, local_store_path, one_opener_at_a_time, safe_name

ROLE = "ablate.role"  # study | trial | seed
STATUS = "ablate.status"
TRIAL_ID = "ablate.trial_id"
NODE_TAG, NODE_IP_TAG = "ablate.node", "ablate.node_ip"  # the Ray node a trial last ran on
TRIAL_KEY = "ablate.trial_key"  # hash of the resolved config: one trial run per configuration
SEED = "ablate.seed"  # a seed run's seed, set as it is created (its params come a call later)
SPOOLED_AS = "ablate.spooled_as"  # the stand-in id a run had while MLflow was unreachable
PARENT = MLFLOW_PARENT_RUN_ID
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's per-request limits for log_batch
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # UI opens on the runs
RUN_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


# A tracking server that is down should cost a trial seconds, not MLflow's default minutes of
# HTTP retries per call: after these, the call is spooled (see `spooled`) and the study goes on.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


@dataclass
class Tracker:
    """A handle that pickles cheaply into Ray workers: the URI, the experiment and parent run."""

    uri: str
    experiment_id: str = ""
    parent_run_id: str = ""
    spool_dir: str = ""  # where calls that failed wait for `ablate sync`; "" = raise instead

    @property
    def client(self) -> MlflowClient:
        make = functools.partial(MlflowClient, tracking_uri=self.uri)
        return PatientClient.connect(make, _store_name(self.uri))  # type: ignore[return-value]

    # ---- study ------------------------------------------------------------------------------
    def start_study(
        self, name: str, description: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> Tracker:
        """Experiment (created once) and a new parent run for this invocation."""
        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_tags = {MLFLOW_RUN_NOTE: description, **EXPERIMENT_KIND}
            experiment_id = client.create_experiment(
                name, artifact_location=artifact_home(self.uri, name), tags=experiment_tags
            )
        else:
            experiment_id = experiment.experiment_id
            for key, value in {MLFLOW_RUN_NOTE: description, **EXPERIMENT_KIND}.items():
                client.set_experiment_tag(experiment_id, key, value)
        run = client.create_run(
            experiment_id,
            run_name=f"study {name} {time.strftime('%Y-%m-%d %H:%M')}",
            tags={ROLE: "study", MLFLOW_RUN_NOTE: description, **tags},
        )
        handle = Tracker(self.uri, experiment_id, run.info.run_id, self.spool_dir)
        handle.log_params(run.info.run_id, params)
        return handle

    def log_study_file(self, name: str, text: str) -> None:
        """The search-space file as validated (its text, not a path that may have moved)."""
        self.client.log_text(self.parent_run_id, text, safe_name(name))

    @spooled
    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, safe_name(name))

    @spooled
    def finish_study(self, counts: Mapping[str, int], status: str = "completed") -> None:
        client = self.client
        tags = [RunTag(STATUS, status)] + [RunTag(f"ablate.{k}", str(v)) for k, v in counts.items()]
        client.log_batch(self.parent_run_id, tags=tags)
        client.set_terminated(self.parent_run_id, RUN_STATUS.get(status, "FINISHED"))

    # ---- trials and seeds ---------------------------------------------------------------------
    def try_live(self) -> None:
        """At a trial's start, a process that spools (MLflow was unreachable) tries MLflow again,
        at most every `spool.RETRY_LIVE_S`: if it answers, the process's spool file is delivered
        and its calls go to MLflow again, so the UI does not wait for the study's end."""
        if retry_due(self) and self._answers():
            deliver_own(self, Tracker)

    def _answers(self) -> bool:
        try:  # one try, without ablate's retries: this is only a probe
            MlflowClient(tracking_uri=self.uri).search_experiments(max_results=1)
        except Exception:
            return False
        return True

    def start_run(
        self,
        parent_id: str,
        name: str,
        role: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        """A nested run under `parent_id` with its params; returns its run id (a stand-in while
        MLflow is unreachable: the run is created when the spool is replayed). The tags that
        find it again are set as it is created; a kill -9 may still cut it short before its
        params (`complete_params`)."""
        run_id = self.create_run(parent_id, name, role, tags)
        self.log_params(run_id, params)
        return run_id

    @spooled_creation
    def create_run(
        self, parent_id: str, name: str, role: str, tags: Mapping[str, str], spooled_as: str = ""
    ) -> str:
        """`spooled_as`: the stand-in id the trial used while MLflow was unreachable. Its run
        may exist already (an earlier replay made it, or an earlier invocation of the study
        made the configuration's run), so it is looked for before one is created."""
        tags = {PARENT: parent_id, ROLE: role, STATUS: "running", **tags}
        if spooled_as:
            tags[SPOOLED_AS] = spooled_as
            found = self.spooled_run(spooled_as) or self._same_run(tags)
            if found:  # it becomes this trial's (its parent stays an earlier study's)
                mine = [RunTag(k, v) for k, v in tags.items() if k not in (PARENT, STATUS)]
                self.client.log_batch(found, tags=mine)
                return found
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def spooled_run(self, stand_in: str) -> str | None:
        """The id of the run a replay created for the stand-in id `stand_in`, if any."""
        return self._run_tagged({SPOOLED_AS: stand_in})

    def _same_run(self, tags: Mapping[str, str]) -> str | None:
        """An earlier invocation's run of the same configuration (and seed) in the same role."""
        keys = [TRIAL_KEY, ROLE] + ([SEED, PARENT] if tags[ROLE] == "seed" else [])
        return self._run_tagged({k: tags[k] for k in keys})

    def _run_tagged(self, tags: Mapping[str, str]) -> str | None:
        """The id of a run of this study with all of `tags`, if any."""
        match = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], match, max_results=1)
        return runs[0].info.run_id if runs else None

    def complete_params(self, run: Any, params: Mapping[str, Any]) -> None:
        """Log the params a found run lacks: its creation was cut short by a kill -9."""
        missing = {k: v for k, v in params.items() if k not in run.data.params}
        if missing:
            self.log_params(run.info.run_id, missing)

    @spooled
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS])

    @spooled
    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int, timestamp: int | None = None
    ) -> None:
        """`timestamp` (ms): logging the same values again with it stores them once."""
        now = int(time.time() * 1000) if timestamp is None else timestamp
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), MAX_METRICS):
            self.client.log_batch(run_id, metrics=items[start : start + MAX_METRICS])

    def log_file(self, run_id: str, local_path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_path), folder)

    @spooled
    def log_bytes(self, run_id: str, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / safe_name(name)
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path))

    @spooled
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    @spooled
    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again (a trial resumed after a pause, restart or driver kill)."""
        run = self.client.get_run(run_id)
        if run.info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    @spooled
    def log_dataset(self, run_id: str, name: str, digest: str, source: str, rows: int) -> None:
        """The data a run trained on, shown in the UI's dataset panel (context = train)."""
        dataset = Dataset(
            name=name,
            digest=digest,
            source_type="ablate",
            source=json.dumps({"dataset": source}),
            profile=json.dumps({"num_rows": rows}),
        )
        tags = [InputTag("mlflow.data.context", "train")]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    def system_metrics_monitor(self, run_id: str) -> Any:
        """CPU, memory (and GPU, where pynvml finds one) sampled into `run_id` every 10 s."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        return SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=self.uri)

    @spooled
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

    def runs_of_config(self, trial_key: str) -> list[Any] | None:
        """The trial run(s) and seed runs of one configuration, in any invocation of the study;
        None while MLflow is unreachable (the runs are then looked for as the spool is
        replayed)."""
        if spooling(self):
            return None
        try:
            return self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{TRIAL_KEY}` = '{trial_key}'",
                max_results=1000,
            )
        except Exception as err:
            if not self.spool_dir:
                raise
            start_spooling(self, err)
            return None

    def close_orphans(self, status_by_trial: Mapping[str, str]) -> int:
        """Terminate runs of this study left RUNNING (a killed driver or worker); returns how
        many. A run takes its trial's final status, or `killed` when the trial did not end."""
        closed = 0
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
        )
        for run in runs:
            if run.data.tags.get(ROLE) not in ("trial", "seed"):
                continue
            status = status_by_trial.get(run.data.tags.get(TRIAL_ID, ""), "killed")
            self.finish_run(run.info.run_id, status if status in RUN_STATUS else "killed")
            closed += 1
        return closed

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


def _store_name(uri: str) -> str:
    """The store as messages name it: a SQLite store by its file."""
    path = local_store_path(uri)
    return f"the MLflow store {path or uri}"


def check_reachable(uri: str) -> str | None:
    """None when the tracking store answers, else why not (checked before a study starts; a
    locked SQLite store is waited for)."""
    try:
        make = functools.partial(MlflowClient, tracking_uri=uri)
        with one_opener_at_a_time(uri):  # a new store is created here
            PatientClient.connect(make, _store_name(uri)).search_experiments(max_results=1)
    except Exception as err:
        return f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return None


def seed_of(run: Any) -> int | None:
    """A seed run's seed: its tag, or the param of a run made before the tag (None: such a
    run cut short before its params, which holds nothing)."""
    seed = run.data.tags.get(SEED, run.data.params.get("seed"))
    return None if seed is None else int(seed)
