"""The body of one trial, free of Ray: compose, train every seed in lockstep, log, report.

The seeds of a configuration run inside one trial and share one frozen backbone and one decoded
dataset; after every epoch the seed mean is handed to `report` (the scheduler and the searcher
decide on it), after the per-seed metrics went to MLflow and the rows to a Parquet part. A
scheduler may stop the trial inside `report`, so nothing is left to do after it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainers
from ablate import config, results, space
from ablate.spec import StudySpec
from ablate.tracking import TRIAL_ID, Tracker, run_name
from trainers.backbone import load as load_backbone
from trainers.data import load_task
from trainers.loop import resolve_device

Report = Callable[[dict[str, float], dict[str, Any]], None]  # (seed-mean metrics, state)


@dataclass
class TrialContext:
    trial_id: str  # Ray's trial id (or any unique id outside Ray)
    trial_name: str  # t000, t001, ...
    study_dir: Path  # where the Parquet parts go
    tracker: Tracker


def trial_key(cfg: trainers.TrialConfig) -> str:
    """sha256 of the resolved config without the seed, plus the package version."""
    from ablate import __version__

    flat = config.to_flat_dict(cfg)
    flat.pop("seed", None)
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
    key = trial_key(cfg)
    if resume is None:
        trial_run, seed_runs = _start_runs(spec, cfg, values, key, ctx)
    else:
        trial_run, seed_runs = resume["trial_run"], resume["seed_runs"]
    tracker = ctx.tracker
    try:
        _train(spec, cfg, values, key, report, ctx, trial_run, seed_runs, resume)
    except Exception as err:
        text = traceback.format_exc()
        error = f"{type(err).__name__}: {err}"[:4000]
        for run_id in (trial_run, *seed_runs):
            tracker.log_text(run_id, text, "error.txt")
            tracker.finish_run(run_id, "failed", {"ablate.error": error})
        raise


def _start_runs(
    spec: StudySpec, cfg: trainers.TrialConfig, values: dict[str, Any], key: str, ctx: TrialContext
) -> tuple[str, list[str]]:
    """The trial's MLflow run (resolved config as params) and one nested run per seed."""
    tracker = ctx.tracker
    flat = config.to_flat_dict(cfg)
    flat.pop("seed")
    tags = {TRIAL_ID: ctx.trial_id, "ablate.trial_key": key}
    name = run_name(ctx.trial_name, values)
    trial_run = tracker.start_run(tracker.parent_run_id, name, "trial", flat | values, tags)
    tracker.log_text(trial_run, config.to_yaml(cfg), "config.yaml")
    seed_runs = [
        tracker.start_run(trial_run, f"{ctx.trial_name} seed={s}", "seed", flat | {"seed": s}, tags)
        for s in spec.seeds
    ]
    return trial_run, seed_runs


def _train(
    spec: StudySpec,
    cfg: trainers.TrialConfig,
    values: dict[str, Any],
    key: str,
    report: Report,
    ctx: TrialContext,
    trial_run: str,
    seed_runs: list[str],
    resume: dict[str, Any] | None,
) -> None:
    device = resolve_device(cfg.train.device)
    backbone = load_backbone(cfg.backbone, device)  # loaded once, shared by every seed
    task = load_task(cfg.dataset)
    states = resume["seeds"] if resume else [None] * len(spec.seeds)
    fits = [
        trainers.fit(cfg.with_seed(s), backbone, task, resume=state)
        for s, state in zip(spec.seeds, states)
    ]
    tracker, start = ctx.tracker, time.monotonic()
    rows: list[dict[str, Any]] = list(resume["rows"]) if resume else []
    start -= rows[-1]["wall_s"] if rows else 0.0
    for per_seed in zip(*fits):
        epoch = per_seed[0].epoch
        mean = seed_mean([m.metrics for m in per_seed])
        last = epoch == cfg.train.epochs
        for run_id, m in zip(seed_runs, per_seed):
            tracker.log_metrics(run_id, m.metrics, step=epoch)
            tracker.log_bytes(run_id, "prompts.pt", _tensors_bytes(m.method.prompt_tensors()))
        tracker.log_metrics(trial_run, mean, step=epoch)
        status = "completed" if last else "running"
        rows += [
            _row(spec, ctx, key, s, epoch, time.monotonic() - start, status, m.metrics, values)
            for s, m in zip(spec.seeds, per_seed)
        ]
        results.write_part(rows, ctx.study_dir, ctx.trial_id)
        if last:
            for run_id in (trial_run, *seed_runs):
                tracker.finish_run(run_id, "completed", {"ablate.stopped_epoch": str(epoch)})
        state = {
            "trial_run": trial_run,
            "seed_runs": seed_runs,
            "rows": rows,
            "seeds": [m.state() for m in per_seed],
        }
        report(mean | {"epoch": epoch}, state)


def seed_mean(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of every metric all seeds have."""
    keys = set.intersection(*(set(m) for m in per_seed))
    return {k: math.fsum(m[k] for m in per_seed) / len(per_seed) for k in sorted(keys)}


def _row(
    spec: StudySpec,
    ctx: TrialContext,
    key: str,
    seed: int,
    epoch: int,
    wall: float,
    status: str,
    metrics: dict[str, float],
    values: dict[str, Any],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "study": spec.name,
        "trial_id": ctx.trial_id,
        "trial_name": ctx.trial_name,
        "trial_key": key,
        "seed": seed,
        "epoch": epoch,
        "wall_s": wall,
        "status": status,
    }
    row |= {k: float(v) for k, v in metrics.items()}
    row |= {k: results.cell(v) for k, v in values.items()}
    return row


def _tensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    return buffer.getvalue()
