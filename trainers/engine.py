"""What every training loop shares: device, seeding, autocast, optimiser state, epoch metrics.

The base-to-new loop (`trainers.loop`) and the fusion loop (`trainers.fusion`) both import this
module and never each other; `trainers.train` picks the loop for a task.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from trainers.configs import TrialConfig
from trainers.methods.base import PromptMethod

if TYPE_CHECKING:
    from trainers.backbone import Backbone


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    metrics: dict[str, float]
    method: PromptMethod  # the live method, for saving its prompts
    optimizer: torch.optim.Optimizer | None = None
    shuffle: torch.Generator | None = None
    # what the epoch cost (`with_costs`): kept apart from `metrics`, which a training computes
    costs: dict[str, float] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """Everything `fit(..., resume=state)` needs to continue after this epoch exactly."""
        return {
            "epoch": self.epoch,
            "method": {k: v.detach().cpu() for k, v in self.method.state_dict().items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "shuffle": self.shuffle.get_state() if self.shuffle else None,
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_context(cfg: TrialConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where the backbone asks for it and the device is a GPU, else nothing."""
    if cfg.backbone.precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def word_embedder(backbone: Backbone, device: torch.device) -> Callable[[str], Tensor]:
    """EmbedWords for methods: frozen token embeddings of a text, without SOS/EOT."""

    @torch.no_grad()
    def embed(text: str) -> Tensor:
        ids = backbone.tokenizer([text])[0]
        return backbone.model.token_embedding(ids[1 : int(ids.argmax())].to(device)).float().cpu()

    return embed


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


def set_learning_rate(optimizer: torch.optim.Optimizer | None, lr: float) -> None:
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr


def _optimizer(params: list[Tensor], cfg: TrialConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimizer == "adamw":  # MoPE's; torch's default betas and eps, as its code leaves them
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def with_costs(
    epochs: Iterator[list[EpochMetrics]], device: torch.device
) -> Iterator[list[EpochMetrics]]:
    """Each epoch's per-seed metrics plus what the epoch cost: `cost/params` (the seed's
    trainable parameters), `cost/peak_mem_mb` (peak GPU memory allocated in the epoch; on a CPU
    the process's peak resident memory so far) and `cost/epoch_s` (the trial's epoch, all its
    seeds, training and evaluation; not the time the caller spends between epochs)."""
    started = _start_epoch(device)
    for per_seed in epochs:
        costs = {
            "cost/epoch_s": time.perf_counter() - started,
            "cost/peak_mem_mb": _peak_mb(device),
        }
        for m in per_seed:
            m.costs = {"cost/params": float(trainable_parameters(m.method))} | costs
        yield per_seed
        started = _start_epoch(device)


def trainable_parameters(method: PromptMethod) -> int:
    return sum(p.numel() for p in method.parameters() if p.requires_grad)


def _start_epoch(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return time.perf_counter()


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
