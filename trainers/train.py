"""The one entry to training: `fit` / `fit_seeds` load what the caller did not pass and hand the
task to its loop, the base-to-new one (`trainers.loop`) or the fusion one (`trainers.fusion`).

The dispatch lives here, above both loops, so that neither loop imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from trainers import backbone as backbones
from trainers import fusion, loop
from trainers.configs import TrialConfig
from trainers.data import Task, load_task
from trainers.data.fusion import FusionTask
from trainers.engine import EpochMetrics, resolve_device, with_costs
from trainers.frozen import FrozenFeatures


def fit(
    cfg: TrialConfig,
    backbone: backbones.Backbone | None = None,
    task: Task | FusionTask | None = None,
    resume: dict[str, Any] | None = None,
    frozen: FrozenFeatures | None = None,
) -> Iterator[EpochMetrics]:
    """Train `cfg.method` on `cfg.dataset` (few-shot, base classes) and yield metrics per epoch.

    Pass a loaded `backbone` (and `task`) to share them between runs, e.g. the seeds of a trial,
    and one `frozen` cache with them so the runs compute prompt-free features once between them;
    pass `resume` (an `EpochMetrics.state()`) to continue after that epoch.
    """
    for per_seed in fit_seeds(cfg, [cfg.seed], backbone, task, [resume], frozen):
        yield per_seed[0]


def fit_seeds(
    cfg: TrialConfig,
    seeds: Sequence[int],
    backbone: backbones.Backbone | None = None,
    task: Task | FusionTask | None = None,
    resumes: Sequence[dict[str, Any] | None] | None = None,
    frozen: FrozenFeatures | None = None,
) -> Iterator[list[EpochMetrics]]:
    """`fit` for every seed of `seeds` in lockstep: after each epoch, their metrics in order.

    The seeds share the backbone, the dataset and the prompt-free features; with
    `train.fuse_seeds` they also share each training step (see `trainers.loop.run_seeds`).
    """
    device = resolve_device(cfg.train.device)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    backbone = backbone or backbones.load(cfg.backbone, device)
    task = task or load_task(cfg.dataset)
    resumes = list(resumes) if resumes is not None else [None] * len(seeds)
    if isinstance(task, FusionTask):  # image + paired text -> label(s): MoPE's fusion setting
        epochs = fusion.run_seeds(cfg, seeds, backbone, task, resumes, frozen)
    else:
        epochs = loop.run_seeds(cfg, seeds, backbone, task, resumes, frozen)
    yield from with_costs(epochs, device)
