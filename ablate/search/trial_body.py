"""The body of one trial, free of Ray: compose, train every seed together, log, report.

The seeds of a configuration run inside one trial and share one frozen backbone and one decoded
dataset (with `train.fuse_seeds`, also one forward/backward pass per step: `trainers.fit_seeds`).
After every epoch the rows go to a Parquet part (the authoritative record), the per-seed
metrics to MLflow (`trial_runs`: a background thread at most one epoch behind, so the next
epoch trains meanwhile), and then the seed mean is handed to `report` (the scheduler and the
searcher decide on it). The learned prompts are logged once, at the last epoch the trial
reaches. A scheduler may stop the trial inside `report` (Ray ends the trial's thread there):
what is left, those prompts and the calls in flight, is done on the way out (`settle`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trainers
from ablate import results
from ablate.errors import DiskFull
from ablate.search import replay, space
from ablate.search.cells import Arm, arm_states, arms_of
from ablate.search.trial_runs import TrialRuns
from ablate.spec import StudySpec
from ablate.tracking import Tracker
from trainers.backbone import Backbone
from trainers.backbone import load as load_backbone
from trainers.data import Task, load_task
from trainers.engine import EpochMetrics, TrainingDiverged, resolve_device
from trainers.frozen import FrozenFeatures

Report = Callable[[dict[str, float], dict[str, Any]], None]  # (seed-mean metrics, state)


@dataclass
class TrialContext:
    trial_id: str  # Ray's trial id (or any unique id outside Ray)
    trial_name: str  # t000, t001, ...
    study_dir: Path  # where the Parquet parts go
    tracker: Tracker
    system_metrics: bool = False  # sample CPU/memory/GPU into the trial run
    # tags saying where the trial runs (its Ray node), given with its id to every run it takes
    where: Mapping[str, str] = field(default_factory=dict)


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
    arms = arms_of(spec, values)
    if resume is not None and resume["epoch"] >= arms[0].cfg.train.epochs:
        _restore_rows(spec, arms, resume, ctx)  # trained and recorded: nothing to train again
        return
    trial = _Trial(spec, arms, values, ctx)
    trial.open(resume)  # a new trial's runs: on the tracking thread, while the inputs load
    try:
        with trial.runs.system_metrics(ctx.system_metrics):
            trial.train(report, resume)
    except Exception as err:
        trial.runs.fail(err)
        raise
    finally:  # also when a scheduler stopped the trial inside `report` (SystemExit)
        trial.runs.settle()


def _restore_rows(
    spec: StudySpec, arms: list[Arm], resume: dict[str, Any], ctx: TrialContext
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


class _Trial:
    """One configuration: its training of the seeds (of every dataset of a suite), its rows,
    and its MLflow runs (`runs`).

    Cells (configuration x dataset x seed) that the results table already holds to the last
    epoch, from an earlier invocation of the study, are reused instead of trained again.
    """

    def __init__(
        self, spec: StudySpec, arms: list[Arm], values: dict[str, Any], ctx: TrialContext
    ) -> None:
        self.spec, self.arms, self.values, self.ctx = spec, arms, values, ctx
        self.cfg = arms[0].cfg  # what every dataset shares: epochs, method, optimiser
        self.rows: list[dict[str, Any]] = []
        self.runs = TrialRuns(
            spec, arms, values, ctx.tracker, ctx.trial_id, ctx.trial_name, ctx.where
        )

    def open(self, resume: dict[str, Any] | None) -> None:
        """Which seeds train (the cells the table lacks, or the saved state's), and the runs."""
        if resume is None:
            for arm in self.arms:
                arm.reused = results.finished_cells(
                    self.ctx.study_dir, arm.key, self.cfg.train.epochs
                )
        else:  # perhaps another Tune trial's: the rows become ours
            self.rows = _relabelled(resume["rows"], self.ctx)
            for arm, state in zip(self.arms, arm_states(resume)):
                arm.reused = state["reused"]
        self.runs.open(resume)

    def train(self, report: Report, resume: dict[str, Any] | None) -> None:
        states = arm_states(resume) if resume else [{} for _ in self.arms]
        # every dataset's epochs side by side: the scheduler compares trials on the suite mean
        epochs = zip(*(self._epochs(a, s.get("seeds"), resume) for a, s in zip(self.arms, states)))
        first = resume["epoch"] + 1 if resume else 1
        start = time.monotonic() - (self.rows[-1]["wall_s"] if self.rows else 0.0)
        for epoch, per_arm in zip(range(first, self.cfg.train.epochs + 1), epochs):
            self.runs.start_epoch()
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
                "trial_run": self.runs.trial_run,
                "rows": self.rows,
                "logged": self.runs.logged,
                "arms": [
                    a.state() | {"seeds": [m.state() for m in per_seed]}
                    for a, (per_seed, _) in zip(self.arms, per_arm)
                ],
            }
            report(mean | {"epoch": epoch}, state)

    def _epochs(
        self, arm: Arm, states: list[Any] | None, resume: dict[str, Any] | None
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
            if resume is None:  # logged once the runs exist
                self.runs.log_dataset_when_ready(arm, task, fresh)
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
        arm: Arm,
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
            self.runs.log(run_id, m.metrics, epoch)
            tensors = {k: v.detach().clone() for k, v in m.method.prompt_tensors().items()}
            self.runs.keep_prompts(run_id, tensors, backbone)
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
        self.runs.log(self.runs.trial_run, mean | per_dataset, epoch)
        if self.rows:
            rows, folder, name = self.rows, self.ctx.study_dir, self.ctx.trial_id
            when_space(lambda: results.write_part(rows, folder, name), self.ctx.trial_name)
        if epoch == self.cfg.train.epochs:
            self.runs.finish(epoch)

    def _row(
        self,
        arm: Arm,
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
