"""The body of one trial, free of Ray: compose, train every seed together, log, report.

The seeds of a configuration run inside one trial and share one frozen backbone and one decoded
dataset (with `train.fuse_seeds`, also one forward/backward pass per step: `trainers.fit_seeds`).
After every epoch the per-seed metrics go to MLflow, the rows to a Parquet part, and then the
seed mean is handed to `report` (the scheduler and the searcher decide on it). A scheduler may
stop the trial inside `report`, so nothing is left to do after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainers
from ablate import config, results
from ablate.search import replay, space
from ablate.spec import StudySpec
from ablate.tracking import PARENT, ROLE, TRIAL_ID, TRIAL_KEY, Tracker, run_name
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
    """Train one sampled configuration for every seed of the study.

    `report(metrics, state)` gets the seed mean after every epoch and a state from which
    `run(..., resume=state)` continues (same MLflow runs, same rows) after a pause or restart.
    """
    values = space.decode(dict(params))
    cfg = config.compose(spec.trial_overrides(values))
    trial = _Trial(spec, cfg, values, trial_key(cfg), ctx)
    trial.open_runs(resume)
    try:
        with _system_metrics(ctx, trial.trial_run):
            trial.train(report, resume)
    except Exception as err:
        trial.fail(err)
        raise


class _Trial:
    """One configuration: its MLflow runs, its rows, and its training of the seeds.

    Cells (configuration x seed) that the results table already holds to the last epoch, from an
    earlier invocation of the study, are reused instead of trained again.
    """

    def __init__(
        self,
        spec: StudySpec,
        cfg: trainers.TrialConfig,
        values: dict[str, Any],
        key: str,
        ctx: TrialContext,
    ) -> None:
        self.spec, self.cfg, self.values, self.key, self.ctx = spec, cfg, values, key, ctx
        self.tracker = ctx.tracker
        self.trial_run = ""
        self.seed_runs: dict[int, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.reused: dict[int, list[dict[str, Any]]] = {}

    @property
    def fresh_seeds(self) -> list[int]:
        return [s for s in self.spec.seeds if s not in self.reused]

    def open_runs(self, resume: dict[str, Any] | None) -> None:
        """The trial's MLflow run and one nested run per seed: the ones this configuration
        already has (restart, resume, extension), else new ones."""
        if resume is not None:
            self.trial_run, self.seed_runs = resume["trial_run"], resume["seed_runs"]
            self.rows, self.reused = list(resume["rows"]), resume["reused"]
        else:
            self.reused = results.finished_cells(
                self.ctx.study_dir, self.key, self.cfg.train.epochs
            )
            self._find_or_start_runs()
        for run_id in (self.trial_run, *(self.seed_runs[s] for s in self.fresh_seeds)):
            self.tracker.reopen(run_id)

    def _find_or_start_runs(self) -> None:
        flat = config.to_flat_dict(self.cfg)
        flat.pop("seed")
        tags = {TRIAL_ID: self.ctx.trial_id, TRIAL_KEY: self.key}
        runs = self.tracker.runs_of_config(self.key)
        trials = [r.info.run_id for r in runs if r.data.tags.get(ROLE) == "trial"]
        if trials:
            self.trial_run = trials[0]
        else:
            name = run_name(self.ctx.trial_name, self.values)
            parent = self.tracker.parent_run_id
            self.trial_run = self.tracker.start_run(parent, name, "trial", flat | self.values, tags)
            self.tracker.log_text(self.trial_run, config.to_yaml(self.cfg), "config.yaml")
        self.seed_runs = {
            int(r.data.params["seed"]): r.info.run_id
            for r in runs
            if r.data.tags.get(ROLE) == "seed" and r.data.tags.get(PARENT) == self.trial_run
        }
        for run_id in (self.trial_run, *self.seed_runs.values()):
            self.tracker.set_tags(run_id, {TRIAL_ID: self.ctx.trial_id})  # the current Ray trial
        for seed in self.spec.seeds:
            if seed not in self.seed_runs:
                name = f"{self.ctx.trial_name} seed={seed}"
                params = flat | {"seed": seed}
                self.seed_runs[seed] = self.tracker.start_run(
                    self.trial_run, name, "seed", params, tags
                )

    def train(self, report: Report, resume: dict[str, Any] | None) -> None:
        fresh = self.fresh_seeds
        backbone = task = frozen = None
        states = resume["seeds"] if resume else None
        if fresh and replay.table_path():  # metrics read from a tabular benchmark, no training
            backbone = replay.stub_backbone()
            epochs: Any = replay.fit_seeds(self.values, fresh, self.cfg.train.epochs, states)
        elif fresh:
            backbone, task, frozen = shared_inputs(self.cfg)  # one for every seed
            if resume is None:
                self._log_datasets(task, fresh)
            epochs = trainers.fit_seeds(self.cfg, fresh, backbone, task, states, frozen)
        else:
            epochs = itertools.repeat([])
        first = resume["epoch"] + 1 if resume else 1
        start = time.monotonic() - (self.rows[-1]["wall_s"] if self.rows else 0.0)
        for epoch, per_seed in zip(range(first, self.cfg.train.epochs + 1), epochs):
            for m in per_seed:  # what the epoch cost is recorded and searchable like a result
                m.metrics |= m.costs
            by_seed = {s: m.metrics for s, m in zip(fresh, per_seed)}
            self._check_finite(epoch, by_seed)
            by_seed |= {s: _metrics_of(rows[epoch - 1]) for s, rows in self.reused.items()}
            mean = seed_mean([by_seed[s] for s in self.spec.seeds])
            self._record(epoch, per_seed, mean, backbone, time.monotonic() - start)
            state = {
                "epoch": epoch,
                "trial_run": self.trial_run,
                "seed_runs": self.seed_runs,
                "rows": self.rows,
                "reused": self.reused,
                "seeds": [m.state() for m in per_seed],
            }
            report(mean | {"epoch": epoch}, state)

    def _check_finite(self, epoch: int, by_seed: dict[int, dict[str, float]]) -> None:
        """A NaN or infinite loss or study metric fails the trial before it is recorded or
        reported: the searcher and the scheduler never see it (any trainer, replay included)."""
        for seed, metrics in by_seed.items():
            for key in ("train/loss", self.spec.metric.name):
                value = metrics.get(key)
                if value is not None and not math.isfinite(value):
                    raise TrainingDiverged(f"{key} became {value} at epoch {epoch} (seed {seed})")

    def _record(
        self,
        epoch: int,
        per_seed: list[EpochMetrics],
        mean: dict[str, float],
        backbone: Backbone | None,
        wall: float,
    ) -> None:
        """Everything about one epoch, written before the scheduler may stop the trial."""
        tracker = self.tracker
        last = epoch == self.cfg.train.epochs
        for seed, m in zip(self.fresh_seeds, per_seed):
            run_id = self.seed_runs[seed]
            tracker.log_metrics(run_id, m.metrics, step=epoch)
            tracker.log_bytes(run_id, "prompts.pt", _tensors_bytes(m.method.prompt_tensors()))
            readable = json.dumps(describe_prompts(m.method, backbone), indent=1)
            tracker.log_text(run_id, readable, "prompts.json")
        tracker.log_metrics(self.trial_run, mean, step=epoch)
        status = "completed" if last else "running"
        self.rows += [
            self._row(seed, epoch, wall, status, m.metrics)
            for seed, m in zip(self.fresh_seeds, per_seed)
        ]
        if self.rows:
            results.write_part(self.rows, self.ctx.study_dir, self.ctx.trial_id)
        if last:
            for run_id in (self.trial_run, *(self.seed_runs[s] for s in self.fresh_seeds)):
                tracker.finish_run(run_id, "completed", {"ablate.stopped_epoch": str(epoch)})

    def _log_datasets(self, task: Task, seeds: list[int]) -> None:
        """The few-shot images each seed trains on, as an MLflow dataset input (with digest)."""
        d = self.cfg.dataset
        for seed in seeds:
            index = sample_few_shot(task.train.labels, task.base_classes, d.shots, seed)
            digest = hashlib.sha256(index.numpy().tobytes()).hexdigest()[:16]
            name = f"{d.name}-{d.shots}shot-seed{seed}"
            self.tracker.log_dataset(
                self.seed_runs[seed], name, digest, d.root or d.name, len(index)
            )

    def _row(
        self, seed: int, epoch: int, wall: float, status: str, metrics: dict[str, float]
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "study": self.spec.name,
            "trial_id": self.ctx.trial_id,
            "trial_name": self.ctx.trial_name,
            "trial_key": self.key,
            "seed": seed,
            "epoch": epoch,
            "wall_s": wall,
            "status": status,
        }
        row |= {k: float(v) for k, v in metrics.items()}
        row |= {k: results.cell(v) for k, v in self.values.items()}
        return row

    def fail(self, err: Exception) -> None:
        """Mark the trial's runs failed with the error and its traceback (error.txt)."""
        text = traceback.format_exc()
        error = f"{type(err).__name__}: {err}"[:4000]
        fresh = [self.seed_runs[s] for s in self.fresh_seeds if s in self.seed_runs]
        for run_id in filter(None, (self.trial_run, *fresh)):
            self.tracker.log_text(run_id, text, "error.txt")
            self.tracker.finish_run(run_id, "failed", {"ablate.error": error})


_KEPT: dict[str, Any] = {}  # the last trial's inputs, for the next trial in this process


def shared_inputs(cfg: trainers.TrialConfig) -> tuple[Backbone, Task, FrozenFeatures]:
    """The frozen backbone, the dataset and the prompt-free features for `cfg`'s trial.

    Ray reuses a worker process for the study's next trial (`reuse_actors`), so what the last
    trial loaded is kept when the next one uses the same backbone and dataset: the backbone is
    loaded and the images decoded once per process, and CoOp's image features or MoPE's
    conditioning are computed once for every configuration of a study (exact: all frozen).
    Only the last backbone is kept, so a worker never holds two in GPU memory.
    """
    device = resolve_device(cfg.train.device)
    model_key = repr((cfg.backbone, str(device)))
    d = cfg.dataset  # what a task's images depend on; a searched template or batch size not
    data_key = repr((model_key, d.name, d.root, d.shots))
    if _KEPT.get("model_key") != model_key:
        _KEPT.clear()
        _KEPT["backbone"] = load_backbone(cfg.backbone, device)
        _KEPT["model_key"] = model_key
    if _KEPT.get("data_key") != data_key:
        _KEPT["task"], _KEPT["frozen"] = load_task(cfg.dataset), FrozenFeatures()
        _KEPT["data_key"] = data_key
    return _KEPT["backbone"], _KEPT["task"], _KEPT["frozen"]


def _metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """The metric columns of a results row (their names have a slash: val/hm, train/loss)."""
    return {k: v for k, v in row.items() if "/" in k and v is not None}


def seed_mean(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of every metric all seeds have."""
    keys = set.intersection(*(set(m) for m in per_seed))
    return {k: math.fsum(m[k] for m in per_seed) / len(per_seed) for k in sorted(keys)}


@contextlib.contextmanager
def _system_metrics(ctx: TrialContext, run_id: str) -> Iterator[None]:
    if not ctx.system_metrics:
        yield
        return
    monitor = ctx.tracker.system_metrics_monitor(run_id)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def _tensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    return buffer.getvalue()
