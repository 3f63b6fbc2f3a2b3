"""The MLflow side of one trial: its run and one nested run per (dataset,) seed, found or
started, and every call to them (metrics, datasets, prompts, the end) made by a background
thread (`tracking.Outbox`) at most one epoch behind the training.

The runs a configuration already has (a restart, a resume, an extension of the study) are taken
over rather than started again; what a kill -9 kept them from receiving is sent again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from ablate import config
from ablate.search.cells import Arm, arm_states, suite_key
from ablate.spec import StudySpec
from ablate.tracking import (
    PARENT,
    ROLE,
    SEED,
    TRIAL_ID,
    TRIAL_KEY,
    Outbox,
    Tracker,
    is_stand_in,
    run_name,
    seed_of,
)
from trainers.backbone import Backbone
from trainers.data import Task, sample_few_shot
from trainers.inspect import describe_prompts

MetricCall = tuple[str, dict[str, float], int, int]  # (run id, metrics, step, time in ms)


class TrialRuns:
    """A trial's MLflow runs and the calls to them, in the order they are sent."""

    def __init__(
        self,
        spec: StudySpec,
        arms: list[Arm],
        values: dict[str, Any],
        tracker: Tracker,
        trial_id: str,
        trial_name: str,
        where: Mapping[str, str] | None = None,
    ) -> None:
        self.spec, self.arms, self.values, self.tracker = spec, arms, values, tracker
        self.trial_id, self.trial_name = trial_id, trial_name
        # what marks a run as this trial's: its id, and where it runs (a run it takes over
        # from an earlier trial, perhaps on another node, is marked again)
        self.owner = {TRIAL_ID: trial_id, **(where or {})}
        self.cfg = arms[0].cfg
        self.key = suite_key(arms)
        self.trial_run = ""
        self.outbox = Outbox()
        # the last epoch's metric calls, in the trial's state: a kill -9 may lose them in
        # flight, so a resumed trial sends them again
        self.logged: list[MetricCall] = []
        self.prompts: dict[str, tuple[dict[str, Any], Backbone | None]] = {}  # seed run -> last
        self.datasets: list[tuple[Arm, Task, list[int]]] = []  # to log once the runs exist

    def open(self, resume: dict[str, Any] | None) -> None:
        """The runs this configuration already has (restart, resume, extension), else new ones.

        A new trial finds or starts them on the tracking thread (a search, then a run per
        seed: the first in a process also opens the store), while its inputs load and its
        first epoch trains; `ready` waits for them before their ids are used."""
        self.outbox.send(self.tracker.try_live)  # if this process spools, MLflow may be back
        if resume is None:
            self.outbox.send(self._find_or_start)
            return
        # perhaps another Tune trial's: the runs become ours
        self.trial_run = resume["trial_run"]
        for arm, state in zip(self.arms, arm_states(resume)):
            arm.seed_runs = state["seed_runs"]
        for run_id in [self.trial_run, *self._fresh_seed_runs()]:
            self.outbox.send(self.tracker.set_tags, run_id, self.owner)
            self.outbox.send(self.tracker.reopen, run_id)  # it may be finished or killed
        for call in resume.get("logged", []):
            self.outbox.send(self.tracker.log_metrics, *call)

    def ready(self) -> None:
        """Block until the runs are found or started (and every call sent before is made)."""
        self.outbox.wait()

    def _fresh_seed_runs(self) -> list[str]:
        """The runs of the seeds this trial trains (those it has so far)."""
        seeds = self.spec.seeds
        return [a.seed_runs[s] for a in self.arms for s in a.fresh_seeds(seeds) if s in a.seed_runs]

    def _find_or_start(self) -> None:
        """The trial's and seeds' runs, on the tracking thread (its calls are made in line):
        those an earlier trial of this configuration started are reopened, and get the params
        a kill -9 kept them from receiving."""
        found: dict[str, list[Any]] = {}  # one search per key (a trial of one dataset: one)
        for key in {self.key, *(a.key for a in self.arms)}:
            # none while MLflow is unreachable: the replay of the spool looks for them
            found[key] = self.tracker.runs_of_config(key) or []
        params = self._trial_params() | self.values
        trials = [r for r in found[self.key] if r.data.tags.get(ROLE) == "trial"]
        if trials:  # an earlier trial's run becomes this trial's (a new one has its tags)
            self.trial_run = trials[0].info.run_id
            self.tracker.complete_params(trials[0], params)
            self.tracker.set_tags(self.trial_run, self.owner)
        else:
            name = run_name(self.trial_name, self.values)
            tags = {**self.owner, TRIAL_KEY: self.key}
            parent = self.tracker.parent_run_id
            self.trial_run = self.tracker.start_run(parent, name, "trial", params, tags)
        self.tracker.log_text(self.trial_run, config.to_yaml(self.cfg), "config.yaml")
        earlier = [r.info.run_id for r in trials[:1]]
        for arm in self.arms:
            earlier += self._find_or_start_seed_runs(arm, found[arm.key])
        for run_id in earlier:  # runs this trial did not create may be finished or killed
            self.tracker.reopen(run_id)

    def _trial_params(self) -> dict[str, Any]:
        flat = config.to_flat_dict(self.cfg)
        flat.pop("seed")
        if self.spec.datasets:  # the seed runs carry each dataset's own settings
            flat = {k: v for k, v in flat.items() if not k.startswith("dataset.")}
            flat["datasets"] = list(self.spec.datasets)
        return flat

    def _find_or_start_seed_runs(self, arm: Arm, runs: list[Any]) -> list[str]:
        flat = config.to_flat_dict(arm.cfg)
        mine = [
            r
            for r in runs
            if r.data.tags.get(ROLE) == "seed" and r.data.tags.get(PARENT) == self.trial_run
        ]
        arm.seed_runs = {}
        for run in mine:
            seed = seed_of(run)
            if seed is not None:
                arm.seed_runs[seed] = run.info.run_id
                self.tracker.complete_params(run, flat | {"seed": seed})
                self.tracker.set_tags(run.info.run_id, self.owner)
        earlier = list(arm.seed_runs.values())
        on = f" {arm.dataset}" if arm.dataset else ""
        for seed in self.spec.seeds:
            if seed not in arm.seed_runs:
                name = f"{self.trial_name}{on} seed={seed}"
                tags = {**self.owner, TRIAL_KEY: arm.key, SEED: str(seed)}
                arm.seed_runs[seed] = self.tracker.start_run(
                    self.trial_run, name, "seed", flat | {"seed": seed}, tags
                )
        return earlier

    def start_epoch(self) -> None:
        """Wait for the runs and the last epoch's calls (MLflow is at most one epoch behind),
        then send the dataset inputs that wait for the runs."""
        self.ready()
        for arm, task, seeds in self.datasets:
            self._send_dataset(arm, task, seeds)
        self.datasets = []
        self.logged = []

    def log(self, run_id: str, metrics: dict[str, float], epoch: int) -> None:
        call = (run_id, {k: float(v) for k, v in metrics.items()}, epoch, int(time.time() * 1000))
        self.logged.append(call)
        self.outbox.send(self.tracker.log_metrics, *call)

    def keep_prompts(self, run_id: str, tensors: dict[str, Any], backbone: Backbone | None) -> None:
        """A seed's prompts at its latest epoch, logged when the trial ends."""
        self.prompts[run_id] = tensors, backbone

    def log_dataset_when_ready(self, arm: Arm, task: Task, seeds: list[int]) -> None:
        self.datasets.append((arm, task, seeds))

    def finish(self, epoch: int) -> None:
        """At the last epoch: the prompts, the runs completed, every call made."""
        self._send_prompts()
        for run_id in (self.trial_run, *self._fresh_seed_runs()):
            tags = {"ablate.stopped_epoch": str(epoch)}
            self.outbox.send(self.tracker.finish_run, run_id, "completed", tags)
        self.outbox.wait()

    def _send_prompts(self) -> None:
        """Each seed run's prompts at the last epoch it trained (logged once per trial: the
        readable view's nearest tokens cost more than the epoch's other logging together)."""
        for run_id, (tensors, backbone) in self.prompts.items():
            self.outbox.send(_log_prompts, self.tracker, run_id, tensors, backbone)
        self.prompts = {}

    def settle(self) -> None:
        """Before the trial's thread ends: the last prompts sent, every call made. Ray may be
        ending the thread (a stopped trial), so a tracking error is printed, not raised."""
        try:
            self._send_prompts()
            self.outbox.wait()
        except Exception as err:
            print(f"ablate: {self.trial_name}: a tracking call failed: {_error_text(err)}")

    def _send_dataset(self, arm: Arm, task: Task, seeds: list[int]) -> None:
        """The few-shot images each seed trains on, as an MLflow dataset input (with digest)."""
        d = arm.cfg.dataset
        for seed in seeds:
            index = sample_few_shot(task.train.labels, task.base_classes, d.shots, seed)
            digest = hashlib.sha256(index.numpy().tobytes()).hexdigest()[:16]
            name = f"{d.name}-{d.shots}shot-seed{seed}"
            run_id = arm.seed_runs[seed]
            self.outbox.send(
                self.tracker.log_dataset, run_id, name, digest, d.root or d.name, len(index)
            )

    def fail(self, err: Exception) -> None:
        """Mark the runs failed with the error and its traceback (error.txt); called while
        `err` is being handled."""
        text = traceback.format_exc()
        error = _error_text(err)
        self.settle()  # what the epochs before sent, then the failure
        for run_id in filter(None, (self.trial_run, *self._fresh_seed_runs())):
            self.tracker.log_text(run_id, text, "error.txt")
            self.tracker.finish_run(run_id, "failed", {"ablate.error": error})

    @contextlib.contextmanager
    def system_metrics(self, enabled: bool) -> Iterator[None]:
        """CPU, memory and GPU sampled into the trial run while the body runs, if `enabled`."""
        if enabled:
            self.ready()
        if not enabled or is_stand_in(self.trial_run):  # a run that waits for MLflow: none
            yield
            return
        monitor = self.tracker.system_metrics_monitor(self.trial_run)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:4000]


class _Prompts:
    """A seed's prompt tensors as `describe_prompts` reads a method."""

    def __init__(self, tensors: dict[str, Any]) -> None:
        self.tensors = tensors

    def prompt_tensors(self) -> dict[str, Any]:
        return self.tensors


def _log_prompts(
    tracker: Tracker, run_id: str, tensors: dict[str, Any], backbone: Backbone | None
) -> None:
    """prompts.pt (the tensors) and prompts.json (norms, nearest vocabulary tokens)."""
    tracker.log_bytes(run_id, "prompts.pt", _tensors_bytes(tensors))
    readable = describe_prompts(_Prompts(tensors), backbone)  # type: ignore[arg-type]
    tracker.log_text(run_id, json.dumps(readable, indent=1), "prompts.json")


def _tensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    return buffer.getvalue()
