"""What a frozen CLIP computes without prompts, computed once and shared.

The backbone is frozen, so a prompt-free pass gives the same answer every time it sees the same
input: an image's CLIP feature (CoOp's and zero-shot's image side, MoPE's conditioning feature)
and the text features of a class list that no prompt touches (MoPE's frozen template branch).
`FrozenFeatures` keeps those answers, keyed by image identity (task, split, index) and by the
class texts, so later epochs, and the other seeds of a trial training against the same backbone,
reuse them instead of running the towers again.

A key must name the exact input. Augmented training images (`dataset.augment`) are a new view
every step, so the loop passes no keys for them and their features are computed every time;
evaluation images are never augmented and stay cached.

One instance belongs to one (backbone, task) pair: its keys do not name the backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor


class FrozenFeatures:
    """A cache of prompt-free features; `enabled=False` computes every time (for comparison)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._rows: dict[Hashable, Tensor] = {}
        self._blocks: dict[Hashable, Tensor] = {}
        self.computed = 0  # rows and blocks computed (misses), for tests and benchmarks
        self.reused = 0  # rows and blocks served from the cache (hits)

    def rows(
        self,
        keys: Sequence[Hashable] | None,
        inputs: Tensor,
        compute: Callable[[Tensor], Tensor],
    ) -> Tensor:
        """compute(inputs) row by row identity: rows whose key was seen are not computed again.

        `keys[i]` names `inputs[i]`; None (or a disabled cache) computes the whole batch.
        """
        if keys is None or not self.enabled:
            return compute(inputs)
        first = {}  # each unseen key once, at its first position (fused seeds may share images)
        for i, key in enumerate(keys):
            if key not in self._rows:
                first.setdefault(key, i)
        if first:
            missing = list(first.values())
            fresh = compute(inputs[missing] if len(missing) < len(keys) else inputs)
            for i, row in zip(missing, fresh):
                self._rows[keys[i]] = row
        self.computed += len(first)
        self.reused += len(keys) - len(first)
        return torch.stack([self._rows[key] for key in keys])

    def block(self, key: Hashable, compute: Callable[[], Tensor]) -> Tensor:
        """compute(), once per key (e.g. the frozen text features of a class list)."""
        if not self.enabled:
            return compute()
        if key in self._blocks:
            self.reused += 1
        else:
            self._blocks[key] = compute()
            self.computed += 1
        return self._blocks[key]
