"""The base-to-new training loop, readable in one sitting: few-shot base classes in, per-epoch
metrics out. `trainers.fit` / `trainers.fit_seeds` (trainers/train.py) call it for every task but
a fusion one:

    for m in fit(cfg):            # one EpochMetrics per epoch, so a scheduler can stop early
        print(m.epoch, m.metrics["val/hm"])

Metrics (percent): train/loss, train/lr, {split}/base, {split}/new, {split}/hm for the eval split
every epoch, and test/* after the last epoch. Methods' aux losses and diagnostics are added under
train/<name> and diag/<name>.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers import protocols
from trainers.backbone import Backbone
from trainers.configs import TrialConfig
from trainers.data import Split, Task, augment, sample_few_shot
from trainers.engine import (
    EpochMetrics,
    TrainingDiverged,
    autocast_context,
    learning_rate,
    resolve_device,
    seed_everything,
    set_learning_rate,
    training_state,
    word_embedder,
)
from trainers.evaluation import ImagePrep, score
from trainers.frozen import FrozenFeatures
from trainers.methods.base import PromptMethod
from trainers.methods.stack import SeedStack, StackPlan
from trainers.metrics import harmonic_mean
from trainers.prompted_clip import PromptedCLIP
from trainers.registry import method_for_config


def run_seeds(
    cfg: TrialConfig,
    seeds: Sequence[int],
    backbone: Backbone,
    task: Task,
    resumes: Sequence[dict[str, Any] | None],
    frozen: FrozenFeatures | None = None,
) -> Iterator[list[EpochMetrics]]:
    """Train every seed of `seeds` in lockstep on a loaded `task`; after each epoch, their metrics
    in order (`trainers.fit_seeds` loads what is not given and calls this for a base-to-new task).

    The seeds share the backbone, the dataset and the prompt-free features. With
    `train.fuse_seeds` each training step also runs all seeds' batches in one forward and one
    backward pass of the engine (`trainers.methods.stack`); every seed keeps its own few-shot
    sample, shuffle, parameters, loss and optimiser, so each learns what it would alone up to
    float rounding (the stacked matrix products round differently: ~1e-6 after a few epochs);
    `train.fuse_seeds=false` makes a seed's result bit-independent of the other seeds.
    """
    device = resolve_device(cfg.train.device)
    if frozen is None or not cfg.train.cache_frozen:
        frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    prep = ImagePrep(backbone, device)
    runs = [
        SeedRun.start(cfg.with_seed(s), backbone, task, frozen, prep, r)
        for s, r in zip(seeds, resumes)
    ]
    groups = _step_groups(cfg, runs, backbone, frozen)
    autocast = autocast_context(cfg, device)
    for epoch in range(runs[0].first, cfg.train.epochs + 1):
        lr = learning_rate(cfg, epoch - 1)
        metrics: list[dict[str, float]] = [{"train/lr": lr} for _ in runs]
        if runs[0].optimizer is not None:
            trained = []
            for model, group in groups:
                for run in group:
                    set_learning_rate(run.optimizer, lr)
                with autocast:
                    trained += train_epoch(model, group, task, cfg, epoch)
            for m, t in zip(metrics, trained):
                m |= t
        for run, m in zip(runs, metrics):
            with autocast:
                m |= evaluate(run.model, task, cfg.train.eval_split, prep, cfg)
                if epoch == cfg.train.epochs and cfg.train.test_at_end:
                    m |= evaluate(run.model, task, "test", prep, cfg)
        yield [run.epoch_metrics(epoch, m) for run, m in zip(runs, metrics)]


def _step_groups(
    cfg: TrialConfig, runs: list[SeedRun], backbone: Backbone, frozen: FrozenFeatures
) -> list[tuple[PromptedCLIP, list[SeedRun]]]:
    """Which engine takes which seeds' training steps: one SeedStack engine for all of them
    (`train.fuse_seeds`; their splits have equal sizes, so their batches line up), else each
    seed its own engine."""
    if cfg.train.fuse_seeds and len(runs) > 1 and len({len(r.train) for r in runs}) == 1:
        stack = SeedStack([run.method for run in runs])
        return [(PromptedCLIP(backbone, stack, cfg.dataset.template, frozen), runs)]
    return [(run.model, [run]) for run in runs]


@dataclass
class SeedRun:
    """One seed's training: its method in an engine, its few-shot split, optimiser and shuffle."""

    cfg: TrialConfig
    model: PromptedCLIP
    train: Split  # prepared for the backbone, or (dataset.augment) as stored, in [0, 1]
    keys: list[tuple]  # names of the train images, for FrozenFeatures
    optimizer: torch.optim.Optimizer | None
    shuffle: torch.Generator
    first: int  # the first epoch still to train
    prep: ImagePrep

    @classmethod
    def start(
        cls,
        cfg: TrialConfig,
        backbone: Backbone,
        task: Task,
        frozen: FrozenFeatures,
        prep: ImagePrep,
        resume: dict[str, Any] | None,
    ) -> SeedRun:
        seed_everything(cfg.seed)  # the prompts' initial values depend on the seed alone
        method_cfg = cfg.method.for_backbone(backbone.dims)  # as ablate.config composes it
        method = method_for_config(method_cfg)(
            method_cfg, backbone.dims, word_embedder(backbone, prep.device)
        )
        model = PromptedCLIP(backbone, method, cfg.dataset.template, frozen).to(prep.device)
        classes = protocols.train_classes(task, cfg.dataset)  # base, or all (dataset.protocol)
        shots = sample_few_shot(task.train.labels, classes, cfg.dataset.shots, cfg.seed)
        train = task.train.subset(shots).of_classes(classes)
        if cfg.dataset.augment == "none":  # else each step prepares its own views
            train = prep(train)
        else:
            train = Split(train.images.to(prep.device), train.labels.to(prep.device))
        keys = [(task.name, "train", i) for i in shots.tolist()]
        optimizer, shuffle, first = training_state(method, cfg, resume)
        return cls(cfg, model, train, keys, optimizer, shuffle, first, prep)

    @property
    def method(self) -> PromptMethod:
        return self.model.method

    def batch(
        self, index: Tensor, views: torch.Generator | None
    ) -> tuple[Tensor, list[tuple] | None]:
        """The images of one step and their FrozenFeatures keys: the prepared images, keyed
        (their frozen features are reused), or new random views (dataset.augment), unkeyed: a
        view is seen once, so a cached feature of its image would be stale."""
        if views is None:
            return self.train.images[index], [self.keys[i] for i in index.tolist()]
        data = self.cfg.dataset
        images = augment.crop_flip(self.train.images[index], self.prep.size, data.crop_scale, views)
        return self.prep.normalise(images), None

    def epoch_metrics(self, epoch: int, metrics: dict[str, float]) -> EpochMetrics:
        return EpochMetrics(epoch, metrics, self.method, self.optimizer, self.shuffle)


def train_epoch(
    model: PromptedCLIP, runs: list[SeedRun], task: Task, cfg: TrialConfig, epoch: int = 1
) -> list[dict[str, float]]:
    """One pass (epoch `epoch`) over each run's few-shot split in shuffled batches; metrics per
    run.

    One run trains on its own engine. Several runs (a trial's seeds, with equal-sized splits)
    train on their SeedStack engine: their step-k batches go through one forward and backward
    pass; each run's loss has its own parameters only, so their gradients stay apart. With
    `dataset.augment` each run draws its views from its own (seed, epoch) stream.
    """
    model.train()
    names = task.names(protocols.train_classes(task, cfg.dataset))
    orders = [torch.randperm(len(run.train), generator=run.shuffle) for run in runs]
    augmenting = cfg.dataset.augment != "none"
    streams = [augment.views(run.cfg.seed, epoch) if augmenting else None for run in runs]
    totals: list[dict[str, float]] = [{} for _ in runs]
    steps = 0
    for start in range(0, len(orders[0]), cfg.dataset.batch_size):
        batches = [order[start : start + cfg.dataset.batch_size] for order in orders]
        inputs = [run.batch(b, v) for run, b, v in zip(runs, batches, streams)]
        images = torch.cat([views for views, _ in inputs])
        keys = None if augmenting else [key for _, run_keys in inputs for key in run_keys or []]
        logits, plan = model(images, names, keys=keys)
        parts = plan.parts if isinstance(plan, StackPlan) else [plan]
        seed_losses = []
        chunks = logits.chunk(len(runs))
        for run, batch, chunk, part, total in zip(runs, batches, chunks, parts, totals):
            losses = {"ce": F.cross_entropy(chunk.float(), run.train.labels[batch])}
            losses |= run.method.aux_losses(part)
            seed_loss = sum(losses.values())
            if not torch.isfinite(seed_loss):
                raise TrainingDiverged(
                    f"loss became {seed_loss.item()} (seed {run.cfg.seed}, step {steps}, "
                    f"lr {cfg.optim.lr})"
                )
            seed_losses.append(seed_loss)
            for name, value in losses.items():
                total[name] = total.get(name, 0.0) + value.item()
        for run in runs:
            run.optimizer.zero_grad(set_to_none=True)
        sum(seed_losses).backward()  # each seed's parameters get its own loss's gradient
        for run in runs:
            run.optimizer.step()
        for run, part, total in zip(runs, parts, totals):  # after the step, as PMPO's read it
            for name, value in run.method.diagnostics(part).items():
                total[f"diag:{name}"] = total.get(f"diag:{name}", 0.0) + value
        steps += 1
    return [_epoch_means(total, steps) for total in totals]


def _epoch_means(totals: dict[str, float], steps: int) -> dict[str, float]:
    out = {"train/loss": sum(v for k, v in totals.items() if not k.startswith("diag:")) / steps}
    for name, total in totals.items():
        key = f"diag/{name[5:]}" if name.startswith("diag:") else f"train/{name}"
        out[key] = total / steps
    return out


@torch.no_grad()
def evaluate(
    model: PromptedCLIP, task: Task, split_name: str, prep: ImagePrep, cfg: TrialConfig
) -> dict[str, float]:
    """Base accuracy (base images vs base classes), new accuracy, and their harmonic mean."""
    if protocols.trains_on_all(cfg.dataset):  # all classes, then the protocol's targets
        return protocols.evaluate(model, task, split_name, prep, cfg)
    model.eval()
    split = getattr(task, split_name)
    # the split evaluated every epoch keeps its prompt-free features; the final test does not
    keep = split_name == cfg.train.eval_split
    result = {}
    for part, classes in (("base", task.base_classes), ("new", task.new_classes)):
        index = split.in_classes(classes).nonzero().squeeze(1).tolist()
        keys = [(task.name, split_name, i) for i in index] if keep else None
        data, names = split.of_classes(classes), task.names(classes)
        size = cfg.dataset.eval_batch_size
        result[f"{split_name}/{part}"] = score(
            model, data, names, prep, (split_name, part), size, keys
        )
    result[f"{split_name}/hm"] = harmonic_mean(
        result[f"{split_name}/base"], result[f"{split_name}/new"]
    )
    return result
