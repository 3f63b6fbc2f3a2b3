"""ImageNet in CoOp's layout: class folders, no split file.

    root/imagenet/classnames.txt            "n01440764 tench" per line (CoOp ships this file)
    root/imagenet/images/train/<wnid>/*     the 1.28M training images: the few-shot pool
    root/imagenet/images/val/<wnid>/*       the 50,000 validation images: the test split

Labels are the sorted wnid folders of `train` (as CoOp reads them). CoOp evaluates on the val
images and has no separate val split; sampling val from them would score the epochs on test
images, so here val is `min(shots, 4)` images per class held out of the train pool (`VAL_SEED`),
and few-shot sampling never draws them.

Listing 1.28M files takes seconds, so the listing is cached as JSON beside the image shards,
keyed by the folders' modification times.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset
from trainers.data.fewshot import sample_few_shot
from trainers.data.images import ImageFiles, cache_dir
from trainers.data.layouts import (
    LAYOUTS,
    VAL_SEED,
    VAL_SHOTS,
    DatasetLayoutError,
    Item,
    dataset_dir,
    root_of,
)

LAYOUT = LAYOUTS["imagenet"]
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def read_classnames(folder: Path) -> dict[str, str]:
    """wnid -> class name from classnames.txt."""
    path = folder / "classnames.txt"
    if not path.is_file():
        problem = f"{path}: not found; lines '<wnid> <class name>' (CoOp ships it)"
        raise DatasetLayoutError([problem])
    names = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        wnid, _, name = line.strip().partition(" ")
        if not name:
            raise DatasetLayoutError([f"{path}:{n}: expected '<wnid> <class name>', got {line!r}"])
        names[wnid] = name
    return names


def class_folders(folder: Path, names: dict[str, str]) -> list[str]:
    """The sorted wnids of images/train, checked against images/val and classnames.txt."""
    problems = []
    listed = {}
    for split in ("train", "val"):
        d = folder / "images" / split
        if not d.is_dir():
            problems.append(f"{d}: folder not found; expected {d}/<wnid>/<image>")
            continue
        listed[split] = sorted(e.name for e in os.scandir(d) if e.is_dir())
    if problems:
        raise DatasetLayoutError(problems)
    wnids = listed["train"]
    if not wnids:
        problems.append(f"{folder / 'images/train'}: no class folders")
    if set(listed["val"]) != set(wnids):
        diff = sorted(set(listed["val"]) ^ set(wnids))[:5]
        problems.append(f"{folder / 'images'}: train and val class folders differ, e.g. {diff}")
    unnamed = [w for w in wnids if w not in names]
    if unnamed:
        problems.append(f"{folder / 'classnames.txt'}: no class name for {unnamed[:5]}")
    if problems:
        raise DatasetLayoutError(problems)
    return wnids


def list_images(folder: Path, wnids: list[str]) -> dict[str, list[Item]]:
    """train / test items (absolute path, label, wnid), from the listing cache when current."""
    stamp = [os.stat(folder / "images" / s).st_mtime_ns for s in ("train", "val")]
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    cache = cache_dir() / "imagenet" / f"listing-{key}.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["stamp"] == stamp:
            return {s: [tuple(i) for i in saved[s]] for s in ("train", "test")}  # type: ignore[misc]
    items = {
        "train": _scan(folder / "images" / "train", wnids),
        "test": _scan(folder / "images" / "val", wnids),
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, **items}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return items


def _scan(split_dir: Path, wnids: list[str]) -> list[Item]:
    items = []
    for label, wnid in enumerate(wnids):
        files = sorted(e.name for e in os.scandir(split_dir / wnid) if e.is_file())
        d = str(split_dir / wnid)
        items += [(f"{d}/{f}", label, wnid) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    return items


def read(cfg: DataConfig) -> tuple[list[str], dict[str, list[Item]]]:
    folder = dataset_dir(LAYOUT, root_of(cfg, LAYOUT))
    if not folder.is_dir():
        raise DatasetLayoutError([f"{folder}: folder not found; expected {LAYOUT.describe()}"])
    names = read_classnames(folder)
    wnids = class_folders(folder, names)
    return [names[w].replace("_", " ") for w in wnids], list_images(folder, wnids)


def check(cfg: DataConfig) -> list[str]:
    """Cheap: classnames.txt, the class folders of train and val, and that train has images."""
    try:
        folder = dataset_dir(LAYOUT, root_of(cfg, LAYOUT))
        if not folder.is_dir():
            return [f"{folder}: folder not found; expected {LAYOUT.describe()}"]
        wnids = class_folders(folder, read_classnames(folder))
    except DatasetLayoutError as err:
        return err.problems
    first = folder / "images" / "train" / wnids[0]
    if not any(e.name.lower().endswith(IMAGE_SUFFIXES) for e in os.scandir(first)):
        return [f"{first}: no images (.jpeg/.jpg/.png)"]
    return []


@register_dataset("imagenet", check=check)
def load(cfg: DataConfig) -> Task:
    classnames, items = read(cfg)
    if not items["train"] or not items["test"]:
        raise DatasetLayoutError([f"{LAYOUT.name}: train or val has no images"])
    labels = torch.tensor([label for _, label, _ in items["train"]], dtype=torch.long)
    pool = ImageFiles([p for p, _, _ in items["train"]], LAYOUT.name)
    held = sample_few_shot(labels, range(len(classnames)), min(cfg.shots, VAL_SHOTS), VAL_SEED)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[held] = False
    test_labels = torch.tensor([label for _, label, _ in items["test"]], dtype=torch.long)
    return Task(
        name=LAYOUT.name,
        classnames=classnames,
        train=Split(pool.select(rest), labels[rest]),
        val=Split(pool.select(held), labels[held]),
        test=Split(ImageFiles([p for p, _, _ in items["test"]], LAYOUT.name), test_labels),
    )
