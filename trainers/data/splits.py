"""Split files for class-folder datasets that come without CoOp's `split_zhou_*.json`.

CoOp made its split files for DTD, EuroSAT, Food101 and Caltech101 with one function
(`DTD.read_and_split_data`): for each class folder (sorted, some ignored, some renamed), shuffle
its images and take 50 % for train, 20 % for val and the rest for test. `make_split` does the
same with its own seeded generator, so the result is deterministic (same folder, same file) but
not CoOp's exact image assignment: numbers on such a split are comparable between our runs, not
to the papers' tables. Prefer CoOp's file when you can get it; `ablate data prepare` writes this
one only where no split file exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

P_TRAIN, P_VAL = 0.5, 0.2  # CoOp's read_and_split_data defaults
SPLIT_SEED = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# CoOp's per-dataset settings for read_and_split_data: ignored folders and readable class names
IGNORED = {"caltech101": ("BACKGROUND_Google", "Faces_easy")}
NEW_CNAMES = {
    "caltech101": {
        "airplanes": "airplane",
        "Faces": "face",
        "Leopards": "leopard",
        "Motorbikes": "motorbike",
    },
    "eurosat": {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    },
}
SUPPORTED = ("caltech101", "dtd", "eurosat", "food101")  # class-folder layouts CoOp split itself


def make_split(name: str, image_dir: Path, seed: int = SPLIT_SEED) -> dict[str, list[list]]:
    """{"train"|"val"|"test": [[relative path, label, class name], ...]} from class folders."""
    ignored = IGNORED.get(name, ())
    renamed = NEW_CNAMES.get(name, {})
    folders = sorted(
        e.name
        for e in os.scandir(image_dir)
        if e.is_dir() and not e.name.startswith(".") and e.name not in ignored
    )
    rng = np.random.default_rng(seed)
    split: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    for label, folder in enumerate(folders):
        files = sorted(
            e.name
            for e in os.scandir(image_dir / folder)
            if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
        )
        files = [files[i] for i in rng.permutation(len(files))]
        n_train, n_val = round(len(files) * P_TRAIN), round(len(files) * P_VAL)
        parts = {
            "train": files[:n_train],
            "val": files[n_train : n_train + n_val],
            "test": files[n_train + n_val :],
        }
        classname = renamed.get(folder, folder)
        for part, names in parts.items():
            split[part] += [[f"{folder}/{f}", label, classname] for f in names]
    return split


def write_split(name: str, image_dir: Path, path: Path, seed: int = SPLIT_SEED) -> dict:
    """Write `make_split` to `path` (atomically); returns it."""
    split = make_split(name, image_dir, seed)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(split))
    os.replace(tmp, path)
    return split
