"""Accuracy, the base-to-new harmonic mean and multi-label F1 (in percent, as the papers print
them)."""

from __future__ import annotations

from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return 100.0 * (logits.argmax(dim=-1) == labels).float().mean().item()


def harmonic_mean(base: float, new: float) -> float:
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def f1_scores(logits: Tensor, targets: Tensor, threshold: float = 0.0) -> tuple[float, float]:
    """(macro F1, micro F1) of multi-label predictions `logits > threshold` (sigmoid 0.5), as
    MM-IMDB is scored; targets (N, C) 0/1. A class never predicted nor present scores 0 in the
    macro mean (scikit-learn's zero_division=0)."""
    pred = logits > threshold
    true = targets > 0.5
    tp = (pred & true).sum(0).float()
    fp = (pred & ~true).sum(0).float()
    fn = (~pred & true).sum(0).float()
    per_class = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp_min(1)
    return 100.0 * per_class.mean().item(), 100.0 * micro.item()
