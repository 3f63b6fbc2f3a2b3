"""The field's 11 base-to-new datasets, read from CoOp's folder layout (CoOp's DATASETS.md).

Each dataset lives in `root/<folder>/` (`root` is `dataset.root`): its images under an image
folder, and CoOp's fixed split `split_zhou_<Name>.json` ({"train"|"val"|"test": [[relative image
path, label, class name], ...]}) beside them. FGVCAircraft uses its own `images_variant_*.txt`
files and ImageNet its class folders (see `imagenet.py`). Classes are ordered by label, class
names have `_` replaced by spaces (as CoOp's prompt learner does), the first half are base
classes and the second half new ones.

Protocol (CoOp's code): the train split is the pool that few-shot sampling draws `shots` images
per class from, per seed (`trainers.data.sample_few_shot`, in the loop); val is `min(shots, 4)`
images per class of the val split; test is the whole test split. Deviation: a loader never sees
the seed (a trial shares one Task between its seeds), so val is sampled once per (dataset, shots)
with `VAL_SEED` rather than per seed; every seed of every trial is scored on the same val images,
which also makes trials comparable.

Images stay on disk: every split is an `ImageFiles` that decodes (and caches) only what is
indexed, see `images.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset
from trainers.data.fewshot import sample_few_shot
from trainers.data.images import ImageFiles

VAL_SEED = 0  # the fixed seed of the val subsample (see the module docstring)
VAL_SHOTS = 4  # CoOp: val = min(shots, 4) images per class
SPLITS = ("train", "val", "test")
Item = tuple[str, int, str]  # (absolute image path, label, class name)


class DatasetLayoutError(ValueError):
    """A dataset folder is missing, or a split file is malformed; `problems` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Layout:
    """Where one dataset lives under the root, and its CoOp facts."""

    name: str  # registry name and preset name
    coop_name: str  # CoOp's dataset class name
    folder: str  # root/<folder>/
    image_dir: str  # images under root/<folder>/<image_dir>/ ("" for the folder itself)
    split_file: str | None  # root/<folder>/<split_file>; None: the dataset's own lists
    template: str  # CoOp's hand-written zero-shot template
    sizes: tuple[int, int, int]  # CoOp's train / val / test sizes (Table 6 of the CoOp paper)
    classes: int

    def describe(self) -> str:
        """The expected layout, for error messages."""
        if self.name == "imagenet":
            return "root/imagenet/images/{train,val}/<wnid>/ and root/imagenet/classnames.txt"
        if self.name == "fgvc_aircraft":
            return ("root/fgvc_aircraft/images/, root/fgvc_aircraft/variants.txt and "
                    "root/fgvc_aircraft/images_variant_{train,val,test}.txt")  # fmt: skip
        images = f"{self.folder}/{self.image_dir}" if self.image_dir else self.folder
        return f"root/{images}/ and root/{self.folder}/{self.split_file}"


LAYOUTS: dict[str, Layout] = {
    x.name: x
    for x in [
        Layout("imagenet", "ImageNet", "imagenet", "images", None, "a photo of a {}.",
               (1_281_167, 0, 50_000), 1000),
        Layout("caltech101", "Caltech101", "caltech-101", "101_ObjectCategories",
               "split_zhou_Caltech101.json", "a photo of a {}.", (4128, 1649, 2465), 100),
        Layout("oxford_pets", "OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
               "a photo of a {}, a type of pet.", (2944, 736, 3669), 37),
        Layout("stanford_cars", "StanfordCars", "stanford_cars", "",
               "split_zhou_StanfordCars.json", "a photo of a {}.", (6509, 1635, 8041), 196),
        Layout("oxford_flowers", "OxfordFlowers", "oxford_flowers", "jpg",
               "split_zhou_OxfordFlowers.json", "a photo of a {}, a type of flower.",
               (4093, 1633, 2463), 102),
        Layout("food101", "Food101", "food-101", "images", "split_zhou_Food101.json",
               "a photo of {}, a type of food.", (50500, 20200, 30300), 101),
        Layout("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", "images", None,
               "a photo of a {}, a type of aircraft.", (3334, 3333, 3333), 100),
        Layout("sun397", "SUN397", "sun397", "SUN397", "split_zhou_SUN397.json",
               "a photo of a {}.", (15880, 3970, 19850), 397),
        Layout("dtd", "DescribableTextures", "dtd", "images",
               "split_zhou_DescribableTextures.json", "{} texture.", (2820, 1128, 1692), 47),
        Layout("eurosat", "EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json",
               "a centered satellite photo of {}.", (13500, 5400, 8100), 10),
        Layout("ucf101", "UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
               "a photo of a person doing {}.", (7639, 1898, 3783), 101),
    ]
}  # fmt: skip


def dataset_dir(layout: Layout, root: str | Path) -> Path:
    return Path(root).expanduser() / layout.folder


def image_dir(layout: Layout, root: str | Path) -> Path:
    folder = dataset_dir(layout, root)
    return folder / layout.image_dir if layout.image_dir else folder


# -- reading -------------------------------------------------------------------------------------


def read_items(layout: Layout, root: str | Path) -> tuple[list[str], dict[str, list[Item]]]:
    """Class names (by label) and train / val / test items; DatasetLayoutError lists problems."""
    folder, images = dataset_dir(layout, root), image_dir(layout, root)
    if not folder.is_dir():
        raise DatasetLayoutError([f"{folder}: folder not found; expected {layout.describe()}"])
    problems = [] if images.is_dir() else [f"{images}: image folder not found; expected "
                                             f"{layout.describe()}"]  # fmt: skip
    try:
        if layout.name == "fgvc_aircraft":
            items = _read_fgvc(folder, images)
        else:
            items = read_split_file(folder / str(layout.split_file), images, layout)
    except DatasetLayoutError as err:
        raise DatasetLayoutError(problems + err.problems) from None
    classnames = check_labels(items, layout)
    if problems:
        raise DatasetLayoutError(problems)
    return classnames, items


def read_split_file(path: Path, images: Path, layout: Layout) -> dict[str, list[Item]]:
    """CoOp's split JSON: {"train"|"val"|"test": [[relative path, label, class name], ...]}."""
    if not path.is_file():
        raise DatasetLayoutError(
            [f"{path}: split file not found; expected {layout.describe()} (CoOp's DATASETS.md)"]
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetLayoutError([f"{path}: not valid JSON ({err})"]) from None
    if not isinstance(data, dict):
        raise DatasetLayoutError([f"{path}: expected an object with train, val and test lists"])
    problems, items = [], {}
    for split in SPLITS:
        entries = data.get(split)
        if not isinstance(entries, list):
            problems.append(f"{path}: '{split}' must be a list of [path, label, class name]")
            continue
        items[split], bad = _parse_entries(entries, images)
        problems += [f"{path}: {split}[{i}]: expected [relative path, label, class name], "
                     f"got {json.dumps(e)[:80]}" for i, e in bad[:3]]  # fmt: skip
        if len(bad) > 3:
            problems.append(f"{path}: {split}: {len(bad) - 3} more malformed entries")
    if problems:
        raise DatasetLayoutError(problems)
    return items


def _parse_entries(entries: list, images: Path) -> tuple[list[Item], list[tuple[int, object]]]:
    good, bad = [], []
    for i, e in enumerate(entries):
        ok = isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
        ok = ok and isinstance(e[1], int) and not isinstance(e[1], bool) and e[1] >= 0
        if ok and isinstance(e[2], str):
            good.append((str(images / e[0]), e[1], e[2]))
        else:
            bad.append((i, e))
    return good, bad


def _read_fgvc(folder: Path, images: Path) -> dict[str, list[Item]]:
    """FGVCAircraft: variants.txt (one class per line) and images_variant_<split>.txt lists."""
    variants = folder / "variants.txt"
    if not variants.is_file():
        raise DatasetLayoutError([f"{variants}: class list not found (fgvc-aircraft-2013b/data)"])
    names = [line.strip() for line in variants.read_text().splitlines() if line.strip()]
    label_of = {name: i for i, name in enumerate(names)}
    problems, items = [], {}
    for split in SPLITS:
        path = folder / f"images_variant_{split}.txt"
        if not path.is_file():
            problems.append(f"{path}: split list not found (lines '<image id> <variant>')")
            continue
        items[split] = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            image_id, _, variant = line.strip().partition(" ")
            if variant not in label_of:
                problems.append(f"{path}:{n}: variant {variant!r} is not in {variants.name}")
                break
            items[split].append((str(images / f"{image_id}.jpg"), label_of[variant], variant))
    if problems:
        raise DatasetLayoutError(problems)
    return items


def check_labels(items: dict[str, list[Item]], layout: Layout) -> list[str]:
    """Labels are 0..K-1, each with one class name; raises DatasetLayoutError otherwise."""
    names: dict[int, str] = {}
    problems = []
    for split, entries in items.items():
        for i, (_, label, name) in enumerate(entries):
            if names.setdefault(label, name) != name:
                problems.append(f"{layout.name} {split}[{i}]: label {label} is {name!r} here "
                                f"but {names[label]!r} elsewhere")  # fmt: skip
                break
    gaps = sorted(set(range(max(names, default=-1) + 1)) - set(names))
    if gaps:
        problems.append(f"{layout.name}: labels {gaps[:5]} have no images; labels must be 0..K-1")
    if len(names) < 2:
        problems.append(f"{layout.name}: found {len(names)} classes; base-to-new needs >= 2")
    if problems:
        raise DatasetLayoutError(problems)
    return [names[k].replace("_", " ") for k in sorted(names)]


# -- the Task ------------------------------------------------------------------------------------


def build_task(
    layout: Layout, classnames: list[str], items: dict[str, list[Item]], shots: int
) -> Task:
    """train = the pool, val = min(shots, 4) per class (VAL_SEED), test = everything."""
    val = _split(layout, items["val"])
    keep = sample_few_shot(val.labels, range(len(classnames)), min(shots, VAL_SHOTS), VAL_SEED)
    val = Split(val.images.select(keep), val.labels[keep])
    train, test = _split(layout, items["train"]), _split(layout, items["test"])
    return Task(name=layout.name, classnames=classnames, train=train, val=val, test=test)


def _split(layout: Layout, items: list[Item]) -> Split:
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
    return Split(ImageFiles([path for path, _, _ in items], layout.name), labels)


def root_of(cfg: DataConfig, layout: Layout) -> Path:
    if not cfg.root:
        raise DatasetLayoutError([no_root_message(layout)])
    return Path(cfg.root).expanduser()


def no_root_message(layout: Layout) -> str:
    return (f"dataset.root is not set; {layout.name} needs the folder that holds "
            f"{layout.describe()} (see docs/datasets.md)")  # fmt: skip


def _register(layout: Layout) -> None:
    @register_dataset(layout.name, check=lambda cfg: check(cfg, layout))
    def load(cfg: DataConfig) -> Task:
        classnames, items = read_items(layout, root_of(cfg, layout))
        return build_task(layout, classnames, items, cfg.shots)


# -- checking ------------------------------------------------------------------------------------


def check(cfg: DataConfig, layout: Layout, full: bool = False) -> list[str]:
    """Every problem with a dataset on disk; `full` also stats every image (slow for big sets).

    Without `full`, only the first and last image of each split are looked for: cheap enough for
    validating a study before launch.
    """
    try:
        _, items = read_items(layout, root_of(cfg, layout))
    except DatasetLayoutError as err:
        return err.problems
    return missing_images(items, full)


def missing_images(items: dict[str, list[Item]], full: bool) -> list[str]:
    problems = []
    for split, entries in items.items():
        sample = entries if full else entries[:1] + entries[-1:]
        missing = [path for path, _, _ in sample if not Path(path).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more of {len(entries)})" if len(missing) > 1 else ""
            problems.append(f"{missing[0]}: image not found, listed in the {split} split{more}")
    return problems


for _layout in LAYOUTS.values():
    if _layout.name != "imagenet":  # imagenet.py reads class folders
        _register(_layout)
