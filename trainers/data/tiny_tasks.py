"""Base-to-new tasks for the pretrained `ablate-tiny-clip`, shipped as compressed uint8 arrays.

Each task is one `trainers/data/tiny_clip/<name>.npz` built by `scripts/make_tiny_clip_tasks.py`
from images the tiny CLIP never saw in pretraining, shifted in ways its captions never named, so
zero-shot is partly right and prompt learning has room to help. Classes are in label order; the
first half are base classes, the second half new ones (the field's protocol). A file holds
`classnames` and `{train,val,test}_{images,labels}`: images (N, H, W) uint8 grayscale, labels
(N,) int64; `train` is the pool that few-shot sampling draws from per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset

TASK_DIR = Path(__file__).parent / "tiny_clip"
SPLITS = ("train", "val", "test")

# name -> the hand-written zero-shot template (also in ablate/conf/dataset/<name>.yaml)
PRESETS: dict[str, dict[str, str]] = {
    "tiny_fashion": {"template": "a photo of a {}."},
    "tiny_animals": {"template": "a photo of a {}."},
    "tiny_mnist": {"template": "a photo of the number {}."},
}


class TaskFileError(ValueError):
    """A task file is missing or malformed."""


def available() -> list[str]:
    """The registered tiny tasks whose files are present."""
    return [name for name in PRESETS if (TASK_DIR / f"{name}.npz").is_file()]


def load_file(path: Path, name: str) -> Task:
    """Read and validate one task file; every problem names the file."""
    if not path.is_file():
        raise TaskFileError(f"{path}: task file not found (run scripts/make_tiny_clip_tasks.py)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:  # zip/format errors: np.load raises several types
        raise TaskFileError(f"{path}: not a readable .npz task file ({err})") from err
    classnames = _classnames(path, arrays)
    splits = {s: _split(path, arrays, s, len(classnames)) for s in SPLITS}
    return Task(name=name, classnames=classnames, **splits)


def _classnames(path: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    names = arrays.get("classnames")
    if names is None or names.ndim != 1 or names.dtype.kind != "U" or len(names) < 2:
        raise TaskFileError(f"{path}: 'classnames' must be a 1-d array of at least 2 strings")
    return [str(n) for n in names]


def _split(path: Path, arrays: dict[str, np.ndarray], split: str, n_classes: int) -> Split:
    images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
    if images is None or labels is None:
        raise TaskFileError(f"{path}: missing '{split}_images' or '{split}_labels'")
    if images.dtype != np.uint8 or images.ndim != 3:
        raise TaskFileError(
            f"{path}: '{split}_images' must be uint8 (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise TaskFileError(f"{path}: '{split}_labels' must be {len(images)} integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise TaskFileError(f"{path}: '{split}_labels' outside 0..{n_classes - 1}")
    x = torch.from_numpy(images).float().div_(255)[:, None].expand(-1, 3, -1, -1)
    return Split(x.contiguous(), torch.from_numpy(labels.astype(np.int64)))


def _register(name: str) -> None:
    @register_dataset(name)
    def load(cfg: DataConfig) -> Task:
        root = Path(cfg.root) if cfg.root else TASK_DIR
        return load_file(root / f"{name}.npz", name)


for _name in PRESETS:
    _register(_name)
