"""Few-shot sampling: `shots` images per class, deterministic given (labels, shots, seed)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sample_few_shot(labels: Tensor, classes: range, shots: int, seed: int) -> Tensor:
    """Indices of `shots` images of each class in `classes` (all of them where fewer exist)."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    picked = []
    for c in classes:
        pool = np.flatnonzero(labels_np == c)
        picked.append(rng.choice(pool, size=min(shots, len(pool)), replace=False))
    return torch.from_numpy(np.sort(np.concatenate(picked)))
