"""A dataset is a function DataConfig -> Task, registered by name.

A Task holds images as float tensors in [0, 1] (N, 3, H, W) with integer labels, split into a
train pool (few-shot sampled per seed), val and test, plus class names sorted by label. Base
classes are the first half of the labels, new classes the second half (the base-to-new protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from trainers.configs import DataConfig


@dataclass
class Split:
    images: Tensor  # (N, 3, H, W) float in [0, 1]
    labels: Tensor  # (N,) int64, indices into Task.classnames

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def of_classes(self, classes: range) -> Split:
        """The images of `classes`, relabelled 0..len(classes)-1."""
        keep = (self.labels >= classes.start) & (self.labels < classes.stop)
        return Split(self.images[keep], self.labels[keep] - classes.start)


@dataclass
class Task:
    name: str
    classnames: list[str]
    train: Split
    val: Split
    test: Split

    @property
    def base_classes(self) -> range:
        return range(0, (len(self.classnames) + 1) // 2)

    @property
    def new_classes(self) -> range:
        return range((len(self.classnames) + 1) // 2, len(self.classnames))

    def names(self, classes: range) -> list[str]:
        return self.classnames[classes.start : classes.stop]


Loader = Callable[[DataConfig], Task]
_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        return fn

    return add


def get_dataset(name: str) -> Loader:
    try:
        return _DATASETS[name]
    except KeyError:
        known = ", ".join(list_datasets())
        raise KeyError(f"unknown dataset {name!r}; registered: {known}") from None


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def load_task(cfg: DataConfig) -> Task:
    return get_dataset(cfg.name)(cfg)
