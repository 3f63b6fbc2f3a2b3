"""Image files decoded on demand into fixed-size tensors, with an on-disk cache of the result.

Why lazy: a Task holds every split as images (N, 3, H, W), but real datasets are far too large
to decode up front (ImageNet's train pool is 1.28M JPEGs, ~190 GB as 224 px floats). An
`ImageFiles` stands in for that tensor: it knows the files and the count, and indexing it (as
`Split.subset` and `Split.of_classes` do) decodes just the selected images. Training therefore
decodes only the few-shot subset, and evaluation only the split it scores.

Why a fixed cache size: each image is decoded once with PIL, its shorter side resized to
`CACHE_SIZE` (bicubic) and centre-cropped to a square, as CLIP's own preprocessing does;
`trainers.evaluation.ImagePrep` then resizes to the backbone's input size. Backbones above
224 px would be upsampled from 224: raise `CACHE_SIZE` (or set ABLATE_IMAGE_SIZE) for them.

Why a disk cache: every trial of a study decodes the same few-shot subsets and eval sets again.
The decoded images are stored as one uint8 `.npy` shard per selection under
`cache_dir()/<dataset>/`, named by the image size, the count and a hash of the files' absolute
paths, so a second load reads one array instead of decoding JPEGs. Shards are written atomically
(temp file + rename), so concurrent trials can share a cache. Replacing images in place under
the same names needs the cache folder deleted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CACHE_SIZE = int(os.environ.get("ABLATE_IMAGE_SIZE", "224"))


class ImageDecodeError(OSError):
    """An image file could not be read or decoded."""


def cache_dir() -> Path:
    """$ABLATE_CACHE_DIR, else $XDG_CACHE_HOME/ablate, else ~/.cache/ablate."""
    if os.environ.get("ABLATE_CACHE_DIR"):
        return Path(os.environ["ABLATE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ablate"


class ImageFiles:
    """A lazy (N, 3, S, S) float image tensor in [0, 1] backed by files; indexing decodes.

    Example::

        files = ImageFiles(["a.jpg", "b.jpg"], dataset="pets")
        images = files[torch.tensor([1])]   # Tensor (1, 3, 224, 224), cached on disk
    """

    def __init__(self, paths: Sequence[str | Path], dataset: str, size: int | None = None):
        self.paths = [str(p) for p in paths]
        self.dataset = dataset
        self.size = size or CACHE_SIZE

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size, self.size)

    def __getitem__(self, index: Tensor | slice | Sequence[int]) -> Tensor:
        rows = np.arange(len(self.paths))[_as_numpy_index(index)]
        return self.load([self.paths[i] for i in np.atleast_1d(rows)])

    def select(self, index: Tensor | Sequence[int]) -> ImageFiles:
        """A lazy subset (decodes nothing)."""
        rows = np.arange(len(self.paths))[_as_numpy_index(index)]
        return ImageFiles([self.paths[i] for i in rows], self.dataset, self.size)

    def load(self, paths: list[str]) -> Tensor:
        """Decode `paths` (or read their shard from the cache) as float (n, 3, S, S)."""
        shard = self.shard_path(paths)
        if shard.is_file():
            array = np.load(shard)
        else:
            array = decode_all(paths, self.size)
            _save_atomic(shard, array)
        return torch.from_numpy(array).float().div_(255)

    def shard_path(self, paths: list[str]) -> Path:
        digest = hashlib.sha256(f"{self.size}\n".encode())
        for p in paths:
            digest.update(os.path.abspath(p).encode() + b"\n")
        name = f"{self.size}px-{len(paths)}-{digest.hexdigest()[:20]}.npy"
        return cache_dir() / self.dataset / name


def decode_all(paths: list[str], size: int) -> np.ndarray:
    """uint8 (n, 3, size, size); decoded in threads (PIL releases the GIL while decoding)."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    if not paths:
        return out
    workers = min(8, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, image in enumerate(pool.map(lambda p: decode(p, size), paths)):
            out[i] = image
    return out


def decode(path: str, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): shorter side resized to `size`, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when large
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            new = (max(size, round(w * scale)), max(size, round(h * scale)))
            img = img.resize(new, Image.Resampling.BICUBIC)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError) as err:
        raise ImageDecodeError(f"{path}: cannot read image ({err})") from err


def _as_numpy_index(index: Tensor | slice | Sequence[int]) -> np.ndarray | slice:
    if isinstance(index, slice):
        return index
    if isinstance(index, Tensor):
        return index.cpu().numpy()
    return np.asarray(index)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache disk only costs speed
        pass
