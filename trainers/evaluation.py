"""Scoring a split: images resized and normalised for the backbone (`ImagePrep`), decoded one
evaluation batch at a time when they live on disk (`eval_batches`), and counted against a class
list (`score`). Shared by the base-to-new loop, the other protocols and fusion datasets.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.backbone import Backbone
from trainers.data import Split
from trainers.prompted_clip import PromptedCLIP


@torch.no_grad()
def score(
    model: PromptedCLIP,
    split: Split,
    classnames: list[str],
    prep: ImagePrep,
    key: object,
    batch_size: int,
    keys: list | None = None,
) -> float:
    """Accuracy (percent) of `split` against `classnames`, one evaluation batch at a time.

    `key` names the split for `prep`'s cache; `keys` name its images for the engine's frozen
    features (None: computed, not kept).
    """
    if len(split) == 0:
        raise ValueError(f"{key}: nothing to evaluate (the split is empty)")
    model.eval()
    text = None if model.method.needs_image else model.text_features(classnames)
    correct = 0
    for start, images in eval_batches(prep, split, key, batch_size):
        batch_keys = None if keys is None else keys[start : start + len(images)]
        logits = model(images, classnames, text_features=text, keys=batch_keys)[0]
        labels = split.labels[start : start + len(images)].to(logits.device)
        correct += int((logits.argmax(dim=-1) == labels).sum())
    return 100.0 * correct / len(split)


def eval_batches(
    prep: ImagePrep, split: Split, key: object, size: int
) -> Iterator[tuple[int, Tensor]]:
    """(start, prepared images) batches of a split: an in-memory split is prepared once and kept
    (epochs re-evaluate it); a split of files is decoded one batch at a time, never whole
    (ImageNet's test images as floats would not fit in memory)."""
    if isinstance(split.images, Tensor):
        data = prep(split, key=key)
        for start in range(0, len(data), size):
            yield start, data.images[start : start + size]
        return
    for start in range(0, len(split), size):
        chunk = Split(split.images[start : start + size], split.labels[start : start + size])
        yield start, prep(chunk).images


class ImagePrep:
    """Resize to the backbone's input size and normalise with its mean/std, once per split.

    Cached by an explicit `key` (e.g. ("val", "base")), never by tensor address: `of_classes`
    makes fresh tensors, and a freed address reused by an equal-sized split would hit wrongly.
    """

    def __init__(self, backbone: Backbone, device: torch.device) -> None:
        self.size = backbone.dims.image_size
        self.mean = torch.tensor(backbone.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(backbone.image_std).view(1, 3, 1, 1)
        self.device = device
        self._cache: dict[object, Split] = {}

    def __call__(self, split: Split, key: object = None) -> Split:
        if key is None:
            return self._prepare(split)
        if key not in self._cache:
            self._cache[key] = self._prepare(split)
        return self._cache[key]

    def normalise(self, images: Tensor) -> Tensor:
        """Images in [0, 1] already at the input size (e.g. augmented views), normalised."""
        images = images.to(self.device)
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.clamp(0, 1) - mean) / std

    def _prepare(self, split: Split) -> Split:
        images = split.images
        if images.shape[-1] != self.size or images.shape[-2] != self.size:
            size = (self.size, self.size)
            images = F.interpolate(images, size=size, mode="bicubic", antialias=True)
        images = (images.clamp(0, 1) - self.mean) / self.std
        return Split(images.to(self.device), split.labels.to(self.device))
