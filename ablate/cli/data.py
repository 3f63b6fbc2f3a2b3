"""`ablate data check` and `ablate data prepare`: the field's datasets on disk.

`check` reads a dataset exactly as a trial would (split file, class list, labels) and looks for
every image it lists, so a broken download is found here rather than in every trial of a study.
`prepare` fetches the images with torchvision's public downloaders; CoOp's split files come from
CoOp's DATASETS.md links (Google Drive), which no public library downloads. For the class-folder
datasets CoOp split itself (caltech101, dtd, eurosat, food101) `prepare` links the downloaded
image folder into CoOp's layout and writes a split file made CoOp's way (trainers.data.splits)
when none is there. For a fusion dataset it converts `manifest.parquet` to `manifest.jsonl`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ablate.cli.parser import Commands
from ablate.errors import ConfigError

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
# where torchvision puts the class folders, under root/<folder>/torchvision/
TORCHVISION_IMAGES = {
    "caltech101": "caltech101/101_ObjectCategories",
    "dtd": "dtd/dtd/images",
    "eurosat": "eurosat/2750",
    "food101": "food-101/images",
}
FUSION_NAMES = ("mm_imdb", "snli_ve", "upmc_food101")  # trainers.data.fusion.FUSION


def add_parsers(commands: Commands) -> None:
    """Add `data check` and `data prepare` to the CLI's subparsers."""
    data = commands.add_parser(
        "data",
        help="check or download the field's datasets",
        description="The few-shot benchmarks live in folders you provide (dataset.root): "
        "`check` says what a folder lacks, `prepare` downloads what torchvision can fetch. "
        "See docs/datasets.md.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="say exactly what is missing or malformed in a dataset folder",
        description="Check a dataset's folder against the layout its loader reads: every "
        "missing or malformed file is listed (exit 2), else one summary line.",
    )
    check.add_argument("dataset", help="a registered dataset, e.g. oxford_pets")
    check.add_argument("--root", help="the folder holding the dataset's folder (dataset.root)")
    check.add_argument(
        "--quick", action="store_true", help="only the first and last image of each split"
    )
    check.set_defaults(func=run_check)
    prepare = actions.add_parser(
        "prepare",
        help="download a dataset's images with torchvision",
        description="Download a dataset with torchvision into ROOT/<its folder>, in the layout "
        "the loader reads.",
    )
    downloadable = sorted(TORCHVISION) + list(FUSION_NAMES)
    prepare.add_argument(
        "dataset", choices=downloadable, metavar="DATASET", help=", ".join(downloadable)
    )
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
    if not problems and layout is None:
        return _other_summary(cfg, full)
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


def _other_summary(cfg: Any, full: bool) -> tuple[list[str], str]:
    """The summary line of an ImageNet variant, a fusion manifest or a packaged dataset."""
    from trainers.data import fusion, imagenet_variants
    from trainers.data.layouts import DatasetLayoutError

    try:
        if cfg.name in imagenet_variants.VARIANTS:
            variant = imagenet_variants.VARIANTS[cfg.name]
            classnames, items = imagenet_variants.read(cfg, variant)
            return [], (
                f"{cfg.name}: ok, {len(classnames)} classes, {len(items)} test images "
                f"(full download: {variant.classes} classes)"
            )
        if cfg.name in fusion.FUSION:
            layout = fusion.FUSION[cfg.name]
            if full and (problems := fusion.check(cfg, layout, full=True)):
                return problems, ""
            classes, examples = fusion.read(cfg, layout)
            counts = " / ".join(f"{sum(e.split == s for e in examples)} {s}" for s in fusion.SPLITS)
            kind = "multi-label" if layout.multi_label else "single-label"
            return [], f"{cfg.name}: ok, {len(classes)} classes ({kind}), {counts} examples"
    except DatasetLayoutError as err:
        return err.problems, ""
    return [], f"{cfg.name}: ok"


def run_prepare(args: argparse.Namespace) -> int:
    """Download with torchvision into root/<folder>/torchvision/; 1 when offline."""
    if args.dataset in FUSION_NAMES:
        return prepare_fusion(args.dataset, args.root)
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
    if args.dataset in TORCHVISION_IMAGES:
        try:
            done = arrange(args.dataset, Path(args.root).expanduser())
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print("\n".join(done))
        problems, summary = inspect_dataset(args.dataset, args.root, full=False)
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        if summary:
            print(summary)
        return 2 if problems else 0
    print(
        f"downloaded {cls_name} into {target}. Arrange it as {layout.describe()} and put CoOp's "
        f"split file there ({COOP_DATASETS_MD}); then run: ablate data check {layout.name} "
        f"--root {args.root}"
    )
    return 0


def arrange(name: str, root: Path) -> list[str]:
    """Link torchvision's class folders into CoOp's layout and write a split file if none is
    there (CoOp's procedure, trainers.data.splits); what was done, one line each."""
    from trainers.data.layouts import LAYOUTS, image_dir
    from trainers.data.splits import write_split

    layout = LAYOUTS[name]
    folder = root / layout.folder
    source = folder / "torchvision" / TORCHVISION_IMAGES[name]
    images = image_dir(layout, root)
    done = []
    if not images.exists():
        if not source.is_dir():  # torchvision changed its layout, or the download is partial
            raise ConfigError(
                f"{source}: not found after torchvision's download, so {images} cannot be "
                f"linked to it; arrange the images as {layout.describe()} by hand "
                f"({COOP_DATASETS_MD})"
            )
        if images.is_symlink():  # a dangling link, e.g. from an earlier run
            images.unlink()
        images.symlink_to(os.path.relpath(source, images.parent), target_is_directory=True)
        done.append(f"linked {images} -> {source}")
    split_path = folder / str(layout.split_file)
    if split_path.exists():
        done.append(f"kept the split file {split_path}")
    else:
        split = write_split(name, images, split_path)
        sizes = " / ".join(str(len(split[s])) for s in ("train", "val", "test"))
        done.append(
            f"wrote {split_path}: {sizes} train / val / test images, split as CoOp does "
            f"(50/20/30 % per class, seed 1) but not CoOp's file; for the papers' exact "
            f"split put CoOp's there instead ({COOP_DATASETS_MD})"
        )
    return done


def prepare_fusion(name: str, root: str) -> int:
    """Convert root/<folder>/manifest.parquet to manifest.jsonl (the trainers read JSONL)."""
    import json

    from ablate import results
    from trainers.data.fusion import FUSION, MANIFEST

    folder = Path(root).expanduser() / FUSION[name].folder
    parquet, jsonl = folder / "manifest.parquet", folder / MANIFEST
    if not parquet.is_file():
        state = "exists" if jsonl.is_file() else "is missing too"
        print(
            f"error: {parquet}: not found ({jsonl.name} {state}); no public downloader: build "
            f"the manifest as docs/datasets.md#fusion-manifests says",
            file=sys.stderr,
        )
        return 1 if not jsonl.is_file() else 0
    try:
        rows = results.read(str(parquet)).to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        print(f"error: {parquet}: not a readable Parquet file ({err})", file=sys.stderr)
        return 2
    tmp = jsonl.with_name(f".{jsonl.name}.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, jsonl)
    print(f"wrote {jsonl} ({len(rows)} rows from {parquet.name})")
    problems, summary = inspect_dataset(name, root, full=False)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if summary:
        print(summary)
    return 2 if problems else 0
