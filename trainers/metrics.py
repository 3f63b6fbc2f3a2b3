"""Accuracy and the base-to-new harmonic mean (in percent, as the papers print them)."""

from __future__ import annotations

from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return 100.0 * (logits.argmax(dim=-1) == labels).float().mean().item()


def harmonic_mean(base: float, new: float) -> float:
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)
