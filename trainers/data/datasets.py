"""A dataset is a function DataConfig -> Task, registered by name.

A Task holds images as float tensors in [0, 1] (N, 3, H, W) with integer labels, split into a
train pool (few-shot sampled per seed), val and test, plus class names sorted by label. Base
classes are the first half of the labels, new classes the second half (the base-to-new protocol).
Datasets on disk hold `ImageFiles` instead of tensors: indexing one decodes just those images.

A dataset may register a `check(cfg) -> list[str]`: the problems with its files, found cheaply,
so a study is rejected before launch rather than failing in every trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from trainers.configs import DataConfig
from trainers.data.images import ImageFiles


@dataclass
class Split:
    images: Tensor | ImageFiles  # (N, 3, H, W) float in [0, 1]; ImageFiles decode on indexing
    labels: Tensor  # (N,) int64, indices into Task.classnames

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def in_classes(self, classes: range) -> Tensor:
        """(N,) bool: which images belong to `classes`."""
        return (self.labels >= classes.start) & (self.labels < classes.stop)

    def of_classes(self, classes: range) -> Split:
        """The images of `classes`, relabelled 0..len(classes)-1 (files stay undecoded)."""
        keep = self.in_classes(classes)
        images = self.images.select(keep) if isinstance(self.images, ImageFiles) else None
        return Split(
            self.images[keep] if images is None else images, self.labels[keep] - classes.start
        )


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
Checker = Callable[[DataConfig], list[str]]
_DATASETS: dict[str, Loader] = {}
_CHECKS: dict[str, Checker] = {}


def register_dataset(name: str, check: Checker | None = None) -> Callable[[Loader], Loader]:
    """Register a loader under `name`; `check` (optional) lists problems without loading."""

    def add(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        if check is not None:
            _CHECKS[name] = check
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


def check(cfg: DataConfig) -> list[str]:
    """Problems with `cfg`'s dataset on disk (missing root, files, malformed splits); [] if fine."""
    if cfg.name not in _DATASETS:
        return [f"dataset.name {cfg.name!r} is not one of {list_datasets()}"]
    checker = _CHECKS.get(cfg.name)
    return checker(cfg) if checker else []
