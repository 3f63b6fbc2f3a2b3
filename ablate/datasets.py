"""`ablate data check` and `ablate data prepare`: the field's datasets on disk.

`check` reads a dataset exactly as a trial would (split file, class list, labels) and looks for
every image it lists, so a broken download is found here rather than in every trial of a study.
`prepare` fetches the images with torchvision's public downloaders; CoOp's split files come from
CoOp's DATASETS.md links (Google Drive), which no public library downloads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# registry name -> (torchvision dataset class, keyword arguments) for `data prepare`
TORCHVISION = {
    "dtd": ("DTD", {}),
    "eurosat": ("EuroSAT", {}),
    "oxford_flowers": ("Flowers102", {}),
    "food101": ("Food101", {}),
    "oxford_pets": ("OxfordIIITPet", {}),
    "stanford_cars": ("StanfordCars", {}),
    "fgvc_aircraft": ("FGVCAircraft", {}),
    "caltech101": ("Caltech101", {}),
    "sun397": ("SUN397", {}),
}
COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


def add_parser(commands: Any) -> None:
    """Add `data check` and `data prepare` to the CLI's subparsers."""
    data = commands.add_parser("data", help="check or download the field's datasets")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="say exactly what is missing or malformed in a dataset folder"
    )
    check.add_argument("dataset", help="a registered dataset, e.g. oxford_pets")
    check.add_argument("--root", help="the folder holding the dataset's folder (dataset.root)")
    check.add_argument(
        "--quick", action="store_true", help="only the first and last image of each split"
    )
    check.set_defaults(func=run_check)
    prepare = actions.add_parser("prepare", help="download a dataset's images with torchvision")
    prepare.add_argument("dataset", choices=sorted(TORCHVISION))
    prepare.add_argument("--root", required=True, help="where the dataset's folder goes")
    prepare.set_defaults(func=run_prepare)


def run_check(args: argparse.Namespace) -> int:
    """0 and a summary when the dataset is complete; 2 and every problem otherwise."""
    problems, summary = inspect_dataset(args.dataset, args.root, full=not args.quick)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{args.dataset}: {len(problems)} problem(s); see docs/datasets.md", file=sys.stderr)
        return 2
    print(summary)
    return 0


def inspect_dataset(name: str, root: str | None, full: bool) -> tuple[list[str], str]:
    """(problems, a one-line summary) for dataset `name` under `root`."""
    from trainers.configs import DataConfig
    from trainers.data import check, list_datasets
    from trainers.data.layouts import LAYOUTS, DatasetLayoutError, missing_images, read_items

    if name not in list_datasets():
        return [f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}"], ""
    cfg = DataConfig(name=name, root=root)
    problems = check(cfg)
    layout = LAYOUTS.get(name)
    if problems or layout is None:
        return problems, f"{name}: ok"
    try:
        if name == "imagenet":
            from trainers.data.imagenet import read

            classnames, items = read(cfg)
        else:
            classnames, items = read_items(layout, root or "")
    except DatasetLayoutError as err:
        return err.problems, ""
    if full:
        problems = missing_images(items, full=True)
    counts = " / ".join(f"{len(v)} {k}" for k, v in items.items())
    coop = " / ".join(str(n) for n in layout.sizes)
    summary = f"{name}: ok, {len(classnames)} classes, {counts} images (CoOp's split: {coop})"
    return problems, summary


def run_prepare(args: argparse.Namespace) -> int:
    """Download with torchvision into root/<folder>/torchvision/; 1 when offline."""
    import torchvision.datasets as tvd

    from trainers.data.layouts import LAYOUTS

    layout = LAYOUTS[args.dataset]
    cls_name, kwargs = TORCHVISION[args.dataset]
    target = Path(args.root).expanduser() / layout.folder / "torchvision"
    try:
        getattr(tvd, cls_name)(root=str(target), download=True, **kwargs)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; bad archives RuntimeError
        print(f"error: could not download {cls_name} into {target}: {err}", file=sys.stderr)
        hint = f"error: no network? download it by hand, as {COOP_DATASETS_MD} says"
        print(hint, file=sys.stderr)
        return 1
    print(
        f"downloaded {cls_name} into {target}. Arrange it as {layout.describe()} and put CoOp's "
        f"split file there ({COOP_DATASETS_MD}); then run: ablate data check {layout.name} "
        f"--root {args.root}"
    )
    return 0
