"""The body of one trial, free of Ray: compose, train every seed together, log, report.

The seeds of a configuration run inside one trial and share one frozen backbone and one decoded
dataset (with `train.fuse_seeds`, also one forward/backward pass per step: `trainers.fit_seeds`).
After every epoch the rows go to a Parquet part (the authoritative record), the per-seed
metrics to MLflow, and then the seed mean is handed to `report` (the scheduler and the searcher
decide on it). MLflow's calls are made by a background thread (`tracking.Outbox`) at most one
epoch behind, so the next epoch trains meanwhile; the learned prompts are logged once, at the
last epoch the trial reaches. A scheduler may stop the trial inside `report` (Ray ends the
trial's thread there): what is left, those prompts and the calls in flight, is done on the way
out (`settle`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trainers
from ablate import config, results
from ablate.errors import DiskFull
from ablate.search import replay, space
from ablate.spec import StudySpec
from ablate.tracking import (
    PARENT,
    ROLE,
    SEED,
    TRIAL_ID,
    TRIAL_KEY,
    Outbox,
    Tracker,
    run_name,
    seed_of,
)
from trainers.backbone import Backbone
from trainers.backbone import load as load_backbone
from trainers.data import Task, load_task, sample_few_shot
from trainers.engine import EpochMetrics, TrainingDiverged, resolve_device
from trainers.frozen import FrozenFeatures
from trainers.inspect import describe_prompts

Report = Callable[[dict[str, float], dict[str, Any]], None]  # (seed-mean metrics, state)


@dataclass
class TrialContext:
    trial_id: str  # Ray's trial id (or any unique id outside Ray)
    trial_name: str  # t000, t001, ...
    study_dir: Path  # where the Parquet parts go
    tracker: Tracker
    system_metrics: bool = False  # sample CPU/memory/GPU into the trial run


# how a trial runs, not what it computes: changing one must not retrain finished cells
SPEED_KNOBS = ("seed", "train.cache_frozen", "train.fuse_seeds", "train.threads")


def trial_key(cfg: trainers.TrialConfig) -> str:
    """sha256 of the resolved config without the seed and the speed knobs, plus the package
    version and the method's revision: the (configuration, seed) cells a results table already
    holds are found by it, and cells of an older computation of the method are not."""
    from ablate import __version__

    flat = config.to_flat_dict(cfg)
    for knob in SPEED_KNOBS:
        flat.pop(knob, None)
    flat["method.revision"] = trainers.method_for_config(cfg.method).revision
    payload = json.dumps(flat, sort_keys=True, default=str) + __version__
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run(
    spec: StudySpec,
    params: Mapping[str, Any],
    report: Report,
    ctx: TrialContext,
    resume: dict[str, Any] | None = None,
) -> None:
    """Train one sampled configuration for every dataset of the suite and every seed.

    `report(metrics, state)` gets the seed mean (a suite's mean of its datasets' seed means)
    after every epoch and a state from which `run(..., resume=state)` continues (same MLflow
    runs, same rows) after a pause or restart.
    """
    values = space.decode(dict(params))
    arms = [_Arm.compose(spec, values, dataset) for dataset in spec.suite]
    if resume is not None and resume["epoch"] >= arms[0].cfg.train.epochs:
        _restore_rows(spec, arms, resume, ctx)  # trained and recorded: nothing to train again
        return
    trial = _Trial(spec, arms, values, ctx)
    trial.open_runs(resume)  # a new trial's: on the tracking thread, while the inputs load
    try:
        with _system_metrics(ctx, trial):
            trial.train(report, resume)
    except Exception as err:
        trial.fail(err)
        raise
    finally:  # also when a scheduler stopped the trial inside `report` (SystemExit)
        trial.settle()


def _restore_rows(
    spec: StudySpec, arms: list[_Arm], resume: dict[str, Any], ctx: TrialContext
) -> None:
    """A finished trial's rows written again from its state when the table has lost some of
    them (a truncated part or table set aside): the cells come back without training."""
    epochs = arms[0].cfg.train.epochs
    have = [results.finished_cells(ctx.study_dir, arm.key, epochs) for arm in arms]
    if all(set(spec.seeds) <= set(cells) for cells in have):
        return
    rows = _relabelled(resume["rows"], ctx)
    when_space(lambda: results.write_part(rows, ctx.study_dir, ctx.trial_id), ctx.trial_name)


def _relabelled(rows: list[dict[str, Any]], ctx: TrialContext) -> list[dict[str, Any]]:
    """Rows of a saved state, as this trial's (a state may be another Tune trial's)."""
    return [r | {"trial_id": ctx.trial_id, "trial_name": ctx.trial_name} for r in rows]


@dataclass
class _Arm:
    """One dataset of a trial (the only one outside a suite): its config, the key of its
    (configuration, dataset) cells, its seed runs and the cells an earlier run finished."""

    dataset: str | None  # None: the study's one dataset, and rows carry no dataset column
    cfg: trainers.TrialConfig
    key: str
    seed_runs: dict[int, str] = field(default_factory=dict)
    reused: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def compose(cls, spec: StudySpec, values: dict[str, Any], dataset: str | None) -> _Arm:
        return cls(dataset, *_composed(tuple(spec.trial_overrides(values, dataset))))

    def fresh_seeds(self, seeds: list[int]) -> list[int]:
        return [s for s in seeds if s not in self.reused]

    def state(self) -> dict[str, Any]:
        return {"seed_runs": self.seed_runs, "reused": self.reused}


@functools.lru_cache(maxsize=16)
def _composed(overrides: tuple[str, ...]) -> tuple[trainers.TrialConfig, str]:
    """A trial's config and cell key: composed once for its state's key and its run."""
    cfg = config.compose(list(overrides))
    return cfg, trial_key(cfg)


def state_key(spec: StudySpec, params: Mapping[str, Any]) -> str:
    """The name of a trial's saved state (`trial_state`): its configuration's cells and its
    seeds. Any trial of that configuration in the study continues from it: Tune's restored
    one, or the trial its restored searcher suggests again when its snapshot predates it."""
    values = space.decode(dict(params))
    arms = [_Arm.compose(spec, values, dataset) for dataset in spec.suite]
    return hashlib.sha256(f"{suite_key(arms)}|{spec.seeds}".encode()).hexdigest()[:16]


def suite_key(arms: list[_Arm]) -> str:
    """The trial run's key: its one dataset's cell key, or a suite's keys together."""
    if len(arms) == 1:
        return arms[0].key
    return hashlib.sha256("|".join(a.key for a in arms).encode()).hexdigest()[:16]


class _Trial:
    """One configuration: its MLflow runs, its rows, and its training of the seeds (of every
    dataset of a suite).

    Cells (configuration x dataset x seed) that the results table already holds to the last
    epoch, from an earlier invocation of the study, are reused instead of trained again.
    """

    def __init__(
        self, spec: StudySpec, arms: list[_Arm], values: dict[str, Any], ctx: TrialContext
    ) -> None:
        self.spec, self.arms, self.values, self.ctx = spec, arms, values, ctx
        self.cfg = arms[0].cfg  # what every dataset shares: epochs, method, optimiser
        self.key = suite_key(arms)
        self.tracker = ctx.tracker
        self.trial_run = ""
        self.rows: list[dict[str, Any]] = []
        self.outbox = Outbox()
        # the last epoch's metric calls (run, metrics, step, ms), in its checkpoint: a kill -9
        # may lose them in flight, so a resumed trial sends them again
        self.logged: list[tuple[str, dict[str, float], int, int]] = []
        self.prompts: dict[str, tuple[dict[str, Any], Backbone | None]] = {}  # seed run -> last
        self.datasets: list[tuple[_Arm, Task, list[int]]] = []  # to log once the runs exist

    def open_runs(self, resume: dict[str, Any] | None) -> None:
        """The trial's MLflow run and one nested run per (dataset,) seed: the ones this
        configuration already has (restart, resume, extension), else new ones.

        A new trial finds or starts them on the tracking thread (a search, then a run per
        seed: the first in a process also opens the store), while its inputs load and its
        first epoch trains; `runs_ready` waits for them before their ids are used."""
        if resume is None:
            for arm in self.arms:  # which seeds train: needed now
                arm.reused = results.finished_cells(
                    self.ctx.study_dir, arm.key, self.cfg.train.epochs
                )
            self.outbox.send(self._find_or_start_runs)
            return
        # perhaps another Tune trial's: the runs and rows become ours
        self.trial_run, self.rows = resume["trial_run"], _relabelled(resume["rows"], self.ctx)
        for arm, state in zip(self.arms, _arm_states(resume)):
            arm.seed_runs, arm.reused = state["seed_runs"], state["reused"]
        earlier = [self.trial_run] + [
            a.seed_runs[s] for a in self.arms for s in a.fresh_seeds(self.spec.seeds)
        ]
        for run_id in earlier:
            self.outbox.send(self.tracker.set_tags, run_id, {TRIAL_ID: self.ctx.trial_id})
            self.outbox.send(self.tracker.reopen, run_id)  # it may be finished or killed
        for call in resume.get("logged", []):
            self.outbox.send(self.tracker.log_metrics, *call)

    def runs_ready(self) -> None:
        """Block until the runs are found or started (and every call sent before is made)."""
        self.outbox.wait()

    def _find_or_start_runs(self) -> None:
        """The trial's and seeds' runs, on the tracking thread (its calls are made in line):
        those an earlier trial of this configuration started are reopened, and get the params
        a kill -9 kept them from receiving."""
        found: dict[str, list[Any]] = {}  # one search per key (a trial of one dataset: one)
        for key in {self.key, *(a.key for a in self.arms)}:
            found[key] = self.tracker.runs_of_config(key)
        params = self._trial_params() | self.values
        trials = [r for r in found[self.key] if r.data.tags.get(ROLE) == "trial"]
        if trials:
            self.trial_run = trials[0].info.run_id
            self.tracker.complete_params(trials[0], params)
        else:
            name = run_name(self.ctx.trial_name, self.values)
            tags = {TRIAL_ID: self.ctx.trial_id, TRIAL_KEY: self.key}
            parent = self.tracker.parent_run_id
            self.trial_run = self.tracker.start_run(parent, name, "trial", params, tags)
        self.tracker.log_text(self.trial_run, config.to_yaml(self.cfg), "config.yaml")
        self.tracker.set_tags(self.trial_run, {TRIAL_ID: self.ctx.trial_id})
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

    def _find_or_start_seed_runs(self, arm: _Arm, runs: list[Any]) -> list[str]:
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
                self.tracker.set_tags(run.info.run_id, {TRIAL_ID: self.ctx.trial_id})
        earlier = list(arm.seed_runs.values())
        on = f" {arm.dataset}" if arm.dataset else ""
        for seed in self.spec.seeds:
            if seed not in arm.seed_runs:
                name = f"{self.ctx.trial_name}{on} seed={seed}"
                tags = {TRIAL_ID: self.ctx.trial_id, TRIAL_KEY: arm.key, SEED: str(seed)}
                arm.seed_runs[seed] = self.tracker.start_run(
                    self.trial_run, name, "seed", flat | {"seed": seed}, tags
                )
        return earlier

    def train(self, report: Report, resume: dict[str, Any] | None) -> None:
        states = _arm_states(resume) if resume else [{} for _ in self.arms]
        # every dataset's epochs side by side: the scheduler compares trials on the suite mean
        epochs = zip(*(self._epochs(a, s.get("seeds"), resume) for a, s in zip(self.arms, states)))
        first = resume["epoch"] + 1 if resume else 1
        start = time.monotonic() - (self.rows[-1]["wall_s"] if self.rows else 0.0)
        for epoch, per_arm in zip(range(first, self.cfg.train.epochs + 1), epochs):
            self.runs_ready()  # and the last epoch's calls: MLflow is at most one epoch behind
            self._send_datasets()
            self.logged = []
            for arm, (per_seed, _) in zip(self.arms, per_arm):
                for m in per_seed:  # what the epoch cost is recorded and searchable like a result
                    m.metrics |= m.costs
                fresh = arm.fresh_seeds(self.spec.seeds)
                self._check_finite(epoch, {s: m.metrics for s, m in zip(fresh, per_seed)})
            means = [
                self._record_arm(arm, epoch, per_seed, backbone, start)
                for arm, (per_seed, backbone) in zip(self.arms, per_arm)
            ]
            mean = seed_mean(means)
            self._record_trial(epoch, mean, means)
            state = {
                "epoch": epoch,
                "trial_run": self.trial_run,
                "rows": self.rows,
                "logged": self.logged,
                "arms": [
                    a.state() | {"seeds": [m.state() for m in per_seed]}
                    for a, (per_seed, _) in zip(self.arms, per_arm)
                ],
            }
            report(mean | {"epoch": epoch}, state)

    def _epochs(
        self, arm: _Arm, states: list[Any] | None, resume: dict[str, Any] | None
    ) -> Iterator[tuple[list[Any], Backbone | None]]:
        """(per fresh seed its epoch's metrics, the backbone) for every epoch of one dataset."""
        fresh = arm.fresh_seeds(self.spec.seeds)
        if not fresh:
            yield from itertools.repeat(([], None))
            return
        if replay.table_path():  # metrics read from a tabular benchmark, no training
            backbone = replay.stub_backbone()
            epochs: Iterator[Any] = replay.fit_seeds(
                self.values, fresh, self.cfg.train.epochs, states, arm.dataset
            )
        else:
            backbone, task, frozen = shared_inputs(arm.cfg, keep=len(self.arms))
            if resume is None:  # logged once the runs exist (`_send_datasets`)
                self.datasets.append((arm, task, fresh))
            epochs = trainers.fit_seeds(arm.cfg, fresh, backbone, task, states, frozen)
        for per_seed in epochs:
            yield per_seed, backbone

    def _check_finite(self, epoch: int, by_seed: dict[int, dict[str, float]]) -> None:
        """A NaN or infinite loss or study metric fails the trial before it is recorded or
        reported: the searcher and the scheduler never see it (any trainer, replay included)."""
        for seed, metrics in by_seed.items():
            for key in ("train/loss", self.spec.metric.name):
                value = metrics.get(key)
                if value is not None and not math.isfinite(value):
                    raise TrainingDiverged(f"{key} became {value} at epoch {epoch} (seed {seed})")

    def _record_arm(
        self,
        arm: _Arm,
        epoch: int,
        per_seed: list[EpochMetrics],
        backbone: Backbone | None,
        start: float,
    ) -> dict[str, float]:
        """One dataset's epoch: its seed runs' metrics, its rows, its prompts kept for the
        end; its seed mean."""
        fresh = arm.fresh_seeds(self.spec.seeds)
        for seed, m in zip(fresh, per_seed):
            run_id = arm.seed_runs[seed]
            self._log(run_id, m.metrics, epoch)
            tensors = {k: v.detach().clone() for k, v in m.method.prompt_tensors().items()}
            self.prompts[run_id] = tensors, backbone
        status = "completed" if epoch == self.cfg.train.epochs else "running"
        wall = time.monotonic() - start
        self.rows += [
            self._row(arm, seed, epoch, wall, status, m.metrics) for seed, m in zip(fresh, per_seed)
        ]
        by_seed = {s: m.metrics for s, m in zip(fresh, per_seed)}
        by_seed |= {s: _metrics_of(rows[epoch - 1]) for s, rows in arm.reused.items()}
        return seed_mean([by_seed[s] for s in self.spec.seeds])

    def _record_trial(
        self, epoch: int, mean: dict[str, float], means: list[dict[str, float]]
    ) -> None:
        """One epoch's rows written, and its MLflow calls sent, before the scheduler may stop
        the trial; at the last epoch, everything is in MLflow too."""
        per_dataset = {  # a suite's trial run also shows each dataset's seed mean
            f"{arm.dataset}/{k}": v
            for arm, m in zip(self.arms, means)
            if arm.dataset
            for k, v in m.items()
        }
        self._log(self.trial_run, mean | per_dataset, epoch)
        if self.rows:
            rows, folder, name = self.rows, self.ctx.study_dir, self.ctx.trial_id
            when_space(lambda: results.write_part(rows, folder, name), self.ctx.trial_name)
        if epoch == self.cfg.train.epochs:
            self._send_prompts()
            fresh = [a.seed_runs[s] for a in self.arms for s in a.fresh_seeds(self.spec.seeds)]
            for run_id in (self.trial_run, *fresh):
                tags = {"ablate.stopped_epoch": str(epoch)}
                self.outbox.send(self.tracker.finish_run, run_id, "completed", tags)
            self.outbox.wait()

    def _log(self, run_id: str, metrics: dict[str, float], epoch: int) -> None:
        call = (run_id, {k: float(v) for k, v in metrics.items()}, epoch, int(time.time() * 1000))
        self.logged.append(call)
        self.outbox.send(self.tracker.log_metrics, *call)

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
            print(f"ablate: {self.ctx.trial_name}: a tracking call failed: {_error_text(err)}")

    def _send_datasets(self) -> None:
        """The few-shot images each seed trains on, as an MLflow dataset input (with digest)."""
        for arm, task, seeds in self.datasets:
            self._send_dataset(arm, task, seeds)
        self.datasets = []

    def _send_dataset(self, arm: _Arm, task: Task, seeds: list[int]) -> None:
        d = arm.cfg.dataset
        for seed in seeds:
            index = sample_few_shot(task.train.labels, task.base_classes, d.shots, seed)
            digest = hashlib.sha256(index.numpy().tobytes()).hexdigest()[:16]
            name = f"{d.name}-{d.shots}shot-seed{seed}"
            self.outbox.send(
                self.tracker.log_dataset,
                arm.seed_runs[seed],
                name,
                digest,
                d.root or d.name,
                len(index),
            )

    def _row(
        self,
        arm: _Arm,
        seed: int,
        epoch: int,
        wall: float,
        status: str,
        metrics: dict[str, float],
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "study": self.spec.name,
            "trial_id": self.ctx.trial_id,
            "trial_name": self.ctx.trial_name,
            "trial_key": arm.key,
            "seed": seed,
            "epoch": epoch,
            "wall_s": wall,
            "status": status,
        }
        if arm.dataset:
            row["dataset"] = arm.dataset
        row |= {k: float(v) for k, v in metrics.items()}
        row |= {k: results.cell(v) for k, v in self.values.items()}
        return row

    def fail(self, err: Exception) -> None:
        """Mark the trial's runs failed with the error and its traceback (error.txt)."""
        text = traceback.format_exc()
        error = _error_text(err)
        self.settle()  # what the epochs before sent, then the failure
        fresh = [
            a.seed_runs[s]
            for a in self.arms
            for s in a.fresh_seeds(self.spec.seeds)
            if s in a.seed_runs
        ]
        for run_id in filter(None, (self.trial_run, *fresh)):
            self.tracker.log_text(run_id, text, "error.txt")
            self.tracker.finish_run(run_id, "failed", {"ablate.error": error})


def _arm_states(resume: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset: its seed runs, reused cells and seed states (a checkpoint written before
    suites held one dataset's at the top level)."""
    if "arms" in resume:
        return resume["arms"]
    return [{k: resume[k] for k in ("seed_runs", "reused", "seeds")}]


def when_space(
    write: Callable[[], Any], who: str, every: float = 5.0, patience: float = 600
) -> Any:
    """`write()`, and on a full disk the same again every `every` seconds: the driver stops the
    study when its disk is below the reserve (this trial then resumes from its last epoch on
    the next run), or space comes back and the trial goes on. A full disk is not the trial's
    fault: only when neither happens within `patience` seconds does the trial fail."""
    waited = 0.0
    while True:
        try:
            return write()
        except DiskFull as err:
            if waited >= patience:
                raise
            if not waited:
                print(f"ablate: {who}: {err}; waiting for space (the study stops to resume)")
            time.sleep(every)
            waited += every


_KEPT: dict[str, Any] = {}  # the last trial's inputs, for the next trial in this process


def shared_inputs(
    cfg: trainers.TrialConfig, keep: int = 1
) -> tuple[Backbone, Task, FrozenFeatures]:
    """The frozen backbone, the dataset and the prompt-free features for `cfg`'s trial.

    Ray reuses a worker process for the study's next trial (`reuse_actors`), so what the last
    trial loaded is kept when the next one uses the same backbone and dataset: the backbone is
    loaded and the images decoded once per process, and CoOp's image features or MoPE's
    conditioning are computed once for every configuration of a study (exact: all frozen).
    Only the last backbone is kept, so a worker never holds two in GPU memory, and the last
    `keep` datasets (a suite's trial trains on each of its datasets every epoch).
    """
    device = resolve_device(cfg.train.device)
    model_key = repr((cfg.backbone, str(device)))
    d = cfg.dataset  # what a task's images depend on; a searched template or batch size not
    data_key = repr((model_key, d.name, d.root, d.shots))
    if _KEPT.get("model_key") != model_key:
        _KEPT.clear()
        _KEPT["backbone"] = load_backbone(cfg.backbone, device)
        _KEPT["model_key"] = model_key
    tasks: dict[str, tuple[Task, FrozenFeatures]] = _KEPT.setdefault("tasks", {})
    if data_key not in tasks:
        while len(tasks) >= keep:
            del tasks[next(iter(tasks))]  # the oldest
        tasks[data_key] = load_task(cfg.dataset), FrozenFeatures()
    task, frozen = tasks[data_key]
    return _KEPT["backbone"], task, frozen


def _metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """The metric columns of a results row (their names have a slash: val/hm, train/loss)."""
    return {k: v for k, v in row.items() if "/" in k and v is not None}


def seed_mean(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of every metric all seeds have."""
    keys = set.intersection(*(set(m) for m in per_seed))
    return {k: math.fsum(m[k] for m in per_seed) / len(per_seed) for k in sorted(keys)}


@contextlib.contextmanager
def _system_metrics(ctx: TrialContext, trial: _Trial) -> Iterator[None]:
    if not ctx.system_metrics:
        yield
        return
    trial.runs_ready()
    monitor = ctx.tracker.system_metrics_monitor(trial.trial_run)
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
