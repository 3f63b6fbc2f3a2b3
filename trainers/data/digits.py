"""scikit-learn's bundled handwritten digits (1,797 8x8 images): the offline quickstart dataset.

Classes "zero".."nine"; base = zero..four, new = five..nine. A fixed stratified split (seed 0):
50% train pool, 20% val, 30% test per class.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset

CLASSNAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FRACTIONS = (0.5, 0.2)  # train pool, val; the rest is test


@register_dataset("digits")
def load_digits(cfg: DataConfig) -> Task:
    pixels, target = read_digits()
    images = torch.from_numpy(pixels / 16.0).float()[:, None].expand(-1, 3, -1, -1)
    labels = torch.from_numpy(target).long()
    train, val, test = _stratified_split(labels.numpy(), seed=0)
    return Task(
        name="digits",
        classnames=CLASSNAMES,
        train=Split(images[train].contiguous(), labels[train]),
        val=Split(images[val].contiguous(), labels[val]),
        test=Split(images[test].contiguous(), labels[test]),
    )


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 images (0-16) and their labels, as `sklearn.datasets.load_digits` reads them
    from scikit-learn's own file, found without importing scikit-learn: its `datasets` module
    takes ~2 s of CPU to import, in every trial worker of a study on this dataset."""
    path = _sklearn_file("datasets/data/digits.csv.gz")
    if path is None:  # another layout of scikit-learn: its own reader
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.images, bunch.target
    with gzip.open(path, mode="rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _sklearn_file(relative: str) -> Path | None:
    spec = importlib.util.find_spec("sklearn")  # a top-level package: found, not imported
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    return path if path.is_file() else None


def _stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a = int(len(idx) * FRACTIONS[0])
        b = a + int(len(idx) * FRACTIONS[1])
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(chunk)
    return tuple(np.sort(np.concatenate(p)) for p in parts)
