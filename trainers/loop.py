"""The training loop, readable in one sitting: few-shot base classes in, per-epoch metrics out.

    for m in fit(cfg):            # one EpochMetrics per epoch, so a scheduler can stop early
        print(m.epoch, m.metrics["val/hm"])

Metrics (percent): train/loss, train/lr, {split}/base, {split}/new, {split}/hm for the eval split
every epoch, and test/* after the last epoch. Methods' aux losses and diagnostics are added under
train/<name> and diag/<name>.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers import backbone as backbones
from trainers import fusion, protocols
from trainers.configs import TrialConfig
from trainers.data import Split, Task, augment, load_task, sample_few_shot
from trainers.data.fusion import FusionTask, augment_problems
from trainers.evaluation import ImagePrep, score
from trainers.frozen import FrozenFeatures
from trainers.methods.base import PromptMethod
from trainers.methods.stack import SeedStack, StackPlan
from trainers.metrics import harmonic_mean
from trainers.prompted_clip import PromptedCLIP
from trainers.registry import method_for_config


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    metrics: dict[str, float]
    method: PromptMethod  # the live method, for saving its prompts
    optimizer: torch.optim.Optimizer | None = None
    shuffle: torch.Generator | None = None

    def state(self) -> dict[str, Any]:
        """Everything `fit(..., resume=state)` needs to continue after this epoch exactly."""
        return {
            "epoch": self.epoch,
            "method": {k: v.detach().cpu() for k, v in self.method.state_dict().items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "shuffle": self.shuffle.get_state() if self.shuffle else None,
        }


def fit(
    cfg: TrialConfig,
    backbone: backbones.Backbone | None = None,
    task: Task | None = None,
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
    task: Task | None = None,
    resumes: Sequence[dict[str, Any] | None] | None = None,
    frozen: FrozenFeatures | None = None,
) -> Iterator[list[EpochMetrics]]:
    """`fit` for every seed of `seeds` in lockstep: after each epoch, their metrics in order.

    The seeds share the backbone, the dataset and the prompt-free features. With
    `train.fuse_seeds` each training step also runs all seeds' batches in one forward and one
    backward pass of the engine (`trainers.methods.stack`); every seed keeps its own few-shot
    sample, shuffle, parameters, loss and optimiser, so each learns what it would alone up to
    float rounding (the stacked matrix products round differently: ~1e-6 after a few epochs);
    `train.fuse_seeds=false` makes a seed's result bit-independent of the other seeds.
    """
    device = resolve_device(cfg.train.device)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    backbone = backbone or backbones.load(cfg.backbone, device)
    task = task or load_task(cfg.dataset)
    resumes = list(resumes) if resumes is not None else [None] * len(seeds)
    if isinstance(task, FusionTask):  # image + paired text -> label(s): MoPE's fusion setting
        _require_no_augment(cfg)
        fits = [
            fusion.fit(cfg.with_seed(s), backbone, task, r, frozen) for s, r in zip(seeds, resumes)
        ]
        yield from (list(per_seed) for per_seed in zip(*fits))
        return
    if frozen is None or not cfg.train.cache_frozen:
        frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    prep = ImagePrep(backbone, device)
    runs = [
        SeedRun.start(cfg.with_seed(s), backbone, task, frozen, prep, r)
        for s, r in zip(seeds, resumes)
    ]
    groups = _step_groups(cfg, runs, backbone, frozen)
    autocast = _autocast(cfg, device)
    for epoch in range(runs[0].first, cfg.train.epochs + 1):
        lr = learning_rate(cfg, epoch - 1)
        metrics: list[dict[str, float]] = [{"train/lr": lr} for _ in runs]
        if runs[0].optimizer is not None:
            trained = []
            for model, group in groups:
                for run in group:
                    run.set_lr(lr)
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
    cfg: TrialConfig, runs: list[SeedRun], backbone: backbones.Backbone, frozen: FrozenFeatures
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
        backbone: backbones.Backbone,
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

    def set_lr(self, lr: float) -> None:
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

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


def training_state(
    method: PromptMethod, cfg: TrialConfig, resume: dict[str, Any] | None
) -> tuple[torch.optim.Optimizer | None, torch.Generator, int]:
    """(optimiser, shuffling generator, first epoch to train) of a run, fresh or restored from
    `resume` (an `EpochMetrics.state()`), which also restores the method's parameters."""
    params = list(method.parameters())
    optimizer = _optimizer(params, cfg) if params else None
    shuffle = torch.Generator().manual_seed(cfg.seed)
    if resume is None:
        return optimizer, shuffle, 1
    method.load_state_dict(resume["method"])
    if optimizer is not None and resume["optimizer"] is not None:
        optimizer.load_state_dict(resume["optimizer"])
    shuffle.set_state(resume["shuffle"])
    return optimizer, shuffle, resume["epoch"] + 1


def learning_rate(cfg: TrialConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`: constant warmup, then cosine decay over all epochs
    (CoOp's schedule), or step decay at the milestones (`optim.schedule=step`, MoPE's)."""
    o = cfg.optim
    if epoch < o.warmup_epochs:
        return o.warmup_lr
    if o.schedule == "step":
        return o.lr * o.gamma ** sum(epoch >= m for m in o.milestones)
    return 0.5 * o.lr * (1 + math.cos(math.pi * epoch / cfg.train.epochs))


def word_embedder(backbone: backbones.Backbone, device: torch.device):
    """EmbedWords for methods: frozen token embeddings of a text, without SOS/EOT."""

    @torch.no_grad()
    def embed(text: str) -> Tensor:
        ids = backbone.tokenizer([text])[0]
        return backbone.model.token_embedding(ids[1 : int(ids.argmax())].to(device)).float().cpu()

    return embed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(params: list[Tensor], cfg: TrialConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimizer == "adamw":  # MoPE's; torch's default betas and eps, as its code leaves them
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _require_no_augment(cfg: TrialConfig) -> None:
    for problem in augment_problems(cfg.dataset):
        raise ValueError(f"{cfg.dataset.name}: {problem}")


def _autocast(cfg: TrialConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.backbone.precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
