"""The domain-generalisation targets: ImageNet-V2, -Sketch, -A and -R, in CoOp's layout.

Evaluation-only datasets (their Task has empty train and val splits): a model trained on
ImageNet (`dataset.protocol=domain_generalization`) is scored on each one's images with ImageNet's
class names and template. Layouts, as CoOp's DATASETS.md describes them, under `dataset.root`:

    imagenetv2/imagenetv2-matched-frequency-format-val/<label 0..999>/*.jpeg
    imagenet-sketch/images/<wnid>/*                    1000 classes
    imagenet-adversarial/imagenet-a/<wnid>/*           200 classes
    imagenet-rendition/imagenet-r/<wnid>/*             200 classes

plus each folder's `classnames.txt` (a copy of ImageNet's "<wnid> <class name>" lines; when it
is absent, `root/imagenet/classnames.txt` is used). Labels follow CoOp's readers: ImageNet-V2's
folder number is the line of classnames.txt; the others' labels are their sorted wnid folders,
so -A and -R are scored on their 200-class subset (200-way classification, as CoOp does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset
from trainers.data.imagenet import IMAGE_SUFFIXES, read_classnames
from trainers.data.images import ImageFiles
from trainers.data.layouts import DatasetLayoutError

TEMPLATE = "a photo of a {}."  # CoOp scores every ImageNet variant with ImageNet's template


@dataclass(frozen=True)
class Variant:
    name: str
    folder: str  # root/<folder>/
    image_dir: str  # root/<folder>/<image_dir>/<class folder>/
    by_index: bool  # class folders are label numbers (V2), not wnids
    classes: int  # in the full download

    def describe(self) -> str:
        sub = "<label 0..999>" if self.by_index else "<wnid>"
        return (
            f"root/{self.folder}/{self.image_dir}/{sub}/<image> and "
            f"root/{self.folder}/classnames.txt"
        )


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("imagenet_v2", "imagenetv2", "imagenetv2-matched-frequency-format-val", True, 1000),
        Variant("imagenet_sketch", "imagenet-sketch", "images", False, 1000),
        Variant("imagenet_a", "imagenet-adversarial", "imagenet-a", False, 200),
        Variant("imagenet_r", "imagenet-rendition", "imagenet-r", False, 200),
    ]
}


def _root(cfg: DataConfig, variant: Variant) -> Path:
    if not cfg.root:
        raise DatasetLayoutError(
            [
                f"dataset.root is not set; {variant.name} needs the folder "
                f"that holds {variant.describe()} (see docs/datasets.md)"
            ]
        )
    return Path(cfg.root).expanduser()


def _classnames(root: Path, variant: Variant) -> dict[str, str]:
    own = root / variant.folder / "classnames.txt"
    if own.is_file() or not (root / "imagenet" / "classnames.txt").is_file():
        try:
            return read_classnames(root / variant.folder)
        except DatasetLayoutError as err:
            if own.is_file():
                raise
            problem = f"{err.problems[0]} (nor root/imagenet/classnames.txt)"
            raise DatasetLayoutError([problem]) from None
    return read_classnames(root / "imagenet")


def read(cfg: DataConfig, variant: Variant) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names by label and (image path, label) pairs; DatasetLayoutError lists problems."""
    root = _root(cfg, variant)
    folder = root / variant.folder
    images = folder / variant.image_dir
    if not folder.is_dir():
        raise DatasetLayoutError([f"{folder}: folder not found; expected {variant.describe()}"])
    if not images.is_dir():
        raise DatasetLayoutError(
            [f"{images}: image folder not found; expected {variant.describe()}"]
        )
    names = _classnames(root, variant)
    folders = sorted(e.name for e in os.scandir(images) if e.is_dir())
    if not folders:
        raise DatasetLayoutError([f"{images}: no class folders; expected {variant.describe()}"])
    wnids = list(names)  # classnames.txt order = ImageNet's labels
    problems = []
    if variant.by_index:
        bad = [f for f in folders if not f.isdigit() or int(f) >= len(wnids)]
        if bad:
            problems.append(
                f"{images / bad[0]}: unknown class folder {bad[0]!r}; expected a "
                f"label 0..{len(wnids) - 1} (a line of classnames.txt)"
            )
        folders = sorted((f for f in folders if f not in bad), key=int)
        labels = {f: int(f) for f in folders}
        classnames = [names[w].replace("_", " ") for w in wnids]
    else:
        bad = [f for f in folders if f not in names]
        if bad:
            problems.append(
                f"{images / bad[0]}: unknown class {bad[0]!r}: not in classnames.txt"
                + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            )
        labels = {f: i for i, f in enumerate(folders)}
        classnames = [names[f].replace("_", " ") for f in folders if f in names]
    if problems:
        raise DatasetLayoutError(problems)
    items = []
    for f in folders:
        files = sorted(e.name for e in os.scandir(images / f) if e.is_file())
        items += [
            (str(images / f / n), labels[f]) for n in files if n.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not items:
        raise DatasetLayoutError([f"{images}: no images (.jpeg/.jpg/.png) in the class folders"])
    return classnames, items


def check(cfg: DataConfig, variant: Variant) -> list[str]:
    try:
        read(cfg, variant)
    except DatasetLayoutError as err:
        return err.problems
    return []


def load(cfg: DataConfig, variant: Variant) -> Task:
    classnames, items = read(cfg, variant)
    empty = Split(ImageFiles([], variant.name), torch.zeros(0, dtype=torch.long))
    test = Split(
        ImageFiles([p for p, _ in items], variant.name),
        torch.tensor([label for _, label in items], dtype=torch.long),
    )
    return Task(name=variant.name, classnames=classnames, train=empty, val=empty, test=test)


def _register(variant: Variant) -> None:
    @register_dataset(variant.name, check=lambda cfg: check(cfg, variant))
    def _load(cfg: DataConfig) -> Task:
        return load(cfg, variant)


for _variant in VARIANTS.values():
    _register(_variant)
