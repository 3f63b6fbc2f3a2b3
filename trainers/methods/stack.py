"""Several seeds of one configuration as one method, so one engine pass trains them all.

Not a registered method: `trainers.loop.run_seeds` builds it from the seeds' own methods (same
config, own parameters). The batch holds each seed's images in one equal block after another;
the seeds' vision prompts become per-image prompts of their block, their text prompt sets are
stacked, and each seed's class embeddings are pooled from its own sets into an (N, C, D) tensor
that the engine matches to that seed's block of images. Each seed's forward, loss and gradient
are the ones it would have alone (up to float rounding: stacked matrix products round
differently); only the launches are shared, so a GPU that small few-shot batches leave idle
gets N times the work per launch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from trainers.methods.base import Conditioning, Edit, PromptMethod, PromptPlan


@dataclass
class StackPlan(PromptPlan):
    """The merged plan, plus each seed's own (for its aux losses and diagnostics)."""

    parts: list[PromptPlan] = field(default_factory=list)


class SeedStack(PromptMethod):
    """N methods of one config; `plan` merges theirs, `pool_text` returns (N, C, D)."""

    def __init__(self, methods: list[PromptMethod]) -> None:
        first = methods[0]
        super().__init__(first.cfg, first.dims, embed_words=None)  # type: ignore[arg-type]
        self.parts = nn.ModuleList(methods)
        self.needs_image = first.needs_image
        self.needs_class_features = first.needs_class_features
        self.uses_paired_text = first.uses_paired_text
        self._stacked_text = False  # whether the last plan stacked text sets (see pool_text)

    def class_text(self, template: str, classname: str) -> str:
        return self.parts[0].class_text(template, classname)

    def plan(self, cond: Conditioning) -> StackPlan:
        conds = split_conditioning(cond, len(self.parts))
        plans = [method.plan(c) for method, c in zip(self.parts, conds)]
        self._stacked_text = bool(plans[0].text)
        return stack_plans(plans, conds[0].batch_size)

    def pool_text(self, features: Tensor, cond: Conditioning) -> Tensor:
        """(N*S, C, D) stacked sets, or (S, C, D) shared when no seed prompts the text."""
        n = len(self.parts)
        chunks = features.chunk(n) if self._stacked_text else [features] * n
        conds = split_conditioning(cond, n)
        pooled = [m.pool_text(f, c) for m, f, c in zip(self.parts, chunks, conds)]
        return torch.stack(pooled)


def split_conditioning(cond: Conditioning, n: int) -> list[Conditioning]:
    """Each seed's block of the batch (class features are per class, so shared)."""

    def block(t: Tensor | None, i: int) -> Tensor | None:
        return None if t is None else t.chunk(n)[i]

    return [
        Conditioning(
            batch_size=max(1, cond.batch_size // n),
            image_features=block(cond.image_features, i),
            class_features=cond.class_features,
            paired_text_features=block(cond.paired_text_features, i),
        )
        for i in range(n)
    ]


def stack_plans(plans: list[PromptPlan], block: int) -> StackPlan:
    """One plan for the stacked batch: vision adds per image, text adds as extra prompt sets."""
    first = plans[0]
    sets = first.text_sets * (len(plans) if first.text else 1)
    out = StackPlan(text_sets=sets, parts=plans)
    for layer, edit in first.vision.items():
        adds = [p.vision[layer].add for p in plans]
        if callable(adds[0]):
            add = _blockwise(adds, block)
        else:
            add = None if adds[0] is None else torch.cat([_per_image(a, block) for a in adds])
        out.vision[layer] = Edit(add=add, carry=edit.carry)
    for layer, edit in first.text.items():
        adds = [p.text[layer].add for p in plans]
        add = None if adds[0] is None else _stack_sets(adds, first.text_sets)
        out.text[layer] = Edit(add=add, carry=edit.carry)
    return out


def _per_image(add: Tensor, block: int) -> Tensor:
    """A vision add, (k, d) shared or (B, k, d) per image, as (B, k, d)."""
    return add.expand(block, -1, -1) if add.dim() == 2 else add


def _blockwise(adds: list[Callable[[Tensor], Tensor]], block: int) -> Callable[[Tensor], Tensor]:
    """Vision adds computed from the layer's input: each seed's from its own block of images."""

    def add(x: Tensor) -> Tensor:
        return torch.cat([_per_image(fn(part), block) for fn, part in zip(adds, x.split(block))])

    return add


def _stack_sets(adds: list[Tensor], sets: int) -> Tensor:
    """Text adds, each (k, d), (S, k, d) or (S, C, k, d), stacked along the set axis."""
    as_sets = [a.expand(sets, -1, -1) if a.dim() == 2 else a for a in adds]
    per_class = [a for a in as_sets if a.dim() == 4]
    if per_class:
        classes = per_class[0].shape[1]
        as_sets = [a if a.dim() == 4 else a[:, None].expand(-1, classes, -1, -1) for a in as_sets]
    return torch.cat(as_sets)
