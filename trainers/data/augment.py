"""Training-image augmentation (`dataset.augment`): CoOp's, MaPLe's and MPL's random resized
crop and horizontal flip.

Their configs set `INPUT.TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]` with
bicubic interpolation and Dassl's crop defaults: an area fraction uniform in (0.08, 1.0), a
log-uniform aspect ratio in (3/4, 4/3), ten tries, else the whole image (torchvision's
`RandomResizedCrop`), then a flip with probability 1/2. Here the crop is cut from the image as
the dataset stores it (`trainers.data.images` keeps the centre square of each file), not from
the original file, and resized with the same bicubic, antialiased resize as evaluation.

Each view is drawn from a `torch.Generator` that `views(seed, epoch)` derives from the seed and
the epoch alone: a trial is reproducible, fused seeds keep their own streams, and a resumed run
draws the views the uninterrupted one would have.

    gen = views(seed=1, epoch=0)
    batch = crop_flip(images, size=224, min_scale=0.08, generator=gen)  # (B, 3, 224, 224)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RATIO = (3 / 4, 4 / 3)  # aspect ratios a crop may have (torchvision's and Dassl's default)
TRIES = 10


def views(seed: int, epoch: int) -> torch.Generator:
    """The generator of a seed's views in one epoch: independent of the shuffle generator, so
    switching augmentation on or off leaves the batch order alone."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def crop_flip(images: Tensor, size: int, min_scale: float, generator: torch.Generator) -> Tensor:
    """One random resized crop (to size x size) and random horizontal flip per image."""
    height, width = images.shape[-2:]
    out = []
    for image in images:
        top, left, h, w = crop_box(height, width, min_scale, generator)
        crop = image[None, :, top : top + h, left : left + w]
        crop = F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True)
        if torch.rand(1, generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.cat(out)


def crop_box(
    height: int, width: int, min_scale: float, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering a random fraction of the area in [min_scale, 1]
    with a random aspect ratio in RATIO; the whole image when ten tries do not fit."""
    area, low, high = height * width, math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(TRIES):
        u = torch.rand(4, generator=generator).tolist()
        target = area * (min_scale + (1 - min_scale) * u[0])
        aspect = math.exp(low + (high - low) * u[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
    return _whole(height, width)


def _whole(height: int, width: int) -> tuple[int, int, int, int]:
    """The centred crop of the image's own size, its aspect ratio clamped to RATIO."""
    ratio = width / height
    if ratio < RATIO[0]:
        h, w = round(width / RATIO[0]), width
    elif ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w
