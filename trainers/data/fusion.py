"""Multimodal fusion datasets (MoPE's setting): image + paired text -> label(s), from a manifest.

    root/<folder>/manifest.jsonl     one JSON object per line:
        {"image": "images/123.jpg", "text": "...", "label": "apple_pie", "split": "train"}
        {"image": "posters/tt01.jpg", "text": "...", "labels": ["Drama", "Comedy"], "split": "test"}

`image` is relative to the manifest's folder, `text` the paired text (UPMC Food-101: the recipe
page text; SNLI-VE: the hypothesis; MM-IMDB: the plot), `label` a class name (single-label) or
`labels` a list of class names (multi-label), `split` one of train / val / test. Parquet
manifests with the same columns are converted by `ablate data prepare <name> --root DIR`
(`manifest.parquet` -> `manifest.jsonl`): the trainers read JSONL only and import no pyarrow.

Classes: SNLI-VE and MM-IMDB have a fixed label set (a label outside it is an error); UPMC
Food-101's are the sorted class names found in the manifest, unless `classes.txt` (one class per
line, in label order) sits beside the manifest, which then fixes them for any preset.

Splits per run, as the CoOp-layout datasets: train is the pool few-shot sampling draws
`dataset.shots` examples per class from (per seed); val is `min(shots, 4)` per class, drawn once
(`VAL_SEED`); test is the whole test split. Multi-label sampling walks the classes in label order
and draws `shots` examples carrying that class among those not yet drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainers.configs import DataConfig
from trainers.data.datasets import Split, Task, register_dataset
from trainers.data.fewshot import sample_few_shot
from trainers.data.images import ImageFiles
from trainers.data.layouts import VAL_SEED, VAL_SHOTS, DatasetLayoutError

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.jsonl"
MM_IMDB_GENRES = (
    *("Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror"),
    *("Documentary", "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History"),
    *("Music", "Animation", "Musical", "Western", "Sport", "Short", "Film-Noir"),
)


@dataclass(frozen=True)
class FusionLayout:
    name: str  # registry and preset name
    folder: str  # root/<folder>/manifest.jsonl
    multi_label: bool
    classes: tuple[str, ...] | None  # the fixed label set; None: sorted labels of the manifest
    template: str  # text for the class names (initialises the single-label head)

    def describe(self) -> str:
        label = '"labels": [class, ...]' if self.multi_label else '"label": class'
        return (
            f'root/{self.folder}/{MANIFEST} with lines {{"image": path relative to it, '
            f'"text": ..., {label}, "split": train|val|test}}'
        )


FUSION: dict[str, FusionLayout] = {
    x.name: x
    for x in [
        FusionLayout("upmc_food101", "upmc_food101", False, None, "a photo of {}, a type of food."),
        FusionLayout(
            "snli_ve",
            "snli_ve",
            False,
            ("entailment", "neutral", "contradiction"),
            "the image and the text are a case of {}.",
        ),
        FusionLayout("mm_imdb", "mm_imdb", True, MM_IMDB_GENRES, "a poster of a {} movie."),
    ]
}


@dataclass
class FusionTask(Task):
    """A Task whose examples also carry a text; multi-label tasks have (N, C) 0/1 float labels."""

    texts: dict[str, list[str]] = field(default_factory=dict)  # split -> texts, aligned
    multi_label: bool = False


@dataclass
class Example:
    image: str  # absolute path
    text: str
    labels: list[str]
    split: str


def fusion_metric_names(name: str) -> list[str] | None:
    """The metrics a fusion dataset reports; None when `name` is not one."""
    if name not in FUSION:
        return None
    kinds = ("macro_f1", "micro_f1") if FUSION[name].multi_label else ("acc",)
    return [f"{s}/{k}" for s in ("val", "test") for k in kinds]


def manifest_path(cfg: DataConfig, layout: FusionLayout) -> Path:
    if not cfg.root:
        raise DatasetLayoutError(
            [
                f"dataset.root is not set; {layout.name} needs "
                f"{layout.describe()} (see docs/datasets.md)"
            ]
        )
    return Path(cfg.root).expanduser() / layout.folder / MANIFEST


def read_manifest(path: Path, layout: FusionLayout) -> list[Example]:
    """Every example of a JSONL manifest; DatasetLayoutError names each malformed line."""
    if not path.is_file():
        parquet = path.with_suffix(".parquet")
        hint = (
            f"; found {parquet.name}: run `ablate data prepare {layout.name} --root ...` to "
            "convert it"
            if parquet.is_file()
            else ""
        )
        raise DatasetLayoutError(
            [f"{path}: manifest not found; expected {layout.describe()}{hint}"]
        )
    examples, problems = [], []
    label_key = "labels" if layout.multi_label else "label"
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{path}:{n}: not valid JSON ({err.msg})")
            continue
        problem = _row_problem(row, label_key)
        if problem:
            problems.append(f"{path}:{n}: {problem}")
            continue
        labels = row[label_key] if layout.multi_label else [row[label_key]]
        examples.append(Example(str(path.parent / row["image"]), row["text"], labels, row["split"]))
    if len(problems) > 3:
        problems = problems[:3] + [f"{path}: {len(problems) - 3} more malformed lines"]
    if problems:
        raise DatasetLayoutError(problems)
    return examples


def _row_problem(row: object, label_key: str) -> str | None:
    if not isinstance(row, dict):
        return "expected a JSON object"
    for key in ("image", "text"):
        if not isinstance(row.get(key), str):
            return f"{key!r} must be a string"
    if row.get("split") not in SPLITS:
        return f"'split' must be one of {', '.join(SPLITS)}, got {row.get('split')!r}"
    value = row.get(label_key)
    if label_key == "label" and not isinstance(value, str):
        return "'label' must be a class name (single-label dataset)"
    if label_key == "labels" and not (
        isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    ):
        return "'labels' must be a non-empty list of class names (multi-label dataset)"
    return None


def class_list(path: Path, layout: FusionLayout, examples: list[Example]) -> list[str]:
    """The classes in label order; DatasetLayoutError for labels outside a fixed set."""
    fixed = path.parent / "classes.txt"
    if fixed.is_file():
        classes = [line.strip() for line in fixed.read_text().splitlines() if line.strip()]
        where = str(fixed)
    elif layout.classes is not None:
        classes, where = list(layout.classes), f"{layout.name}'s label set"
    else:
        return sorted({label for e in examples for label in e.labels})
    known = set(classes)
    unknown = [
        (i, label) for i, e in enumerate(examples) for label in e.labels if label not in known
    ]
    if unknown:
        i, label = unknown[0]
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DatasetLayoutError(
            [
                f"{path}: unknown class {label!r} ({examples[i].split} example "
                f"{examples[i].image}), not in {where}{more}"
            ]
        )
    return classes


def read(cfg: DataConfig, layout: FusionLayout) -> tuple[list[str], list[Example]]:
    path = manifest_path(cfg, layout)
    examples = read_manifest(path, layout)
    classes = class_list(path, layout, examples)
    problems = [
        f"{path}: no {s} examples" for s in SPLITS if not any(e.split == s for e in examples)
    ]
    if len(classes) < 2:
        problems.append(f"{path}: found {len(classes)} classes; need >= 2")
    if problems:
        raise DatasetLayoutError(problems)
    return classes, examples


def check(cfg: DataConfig, layout: FusionLayout, full: bool = False) -> list[str]:
    """Every problem with the manifest; images: the first and last of each split, or all."""
    try:
        _, examples = read(cfg, layout)
    except DatasetLayoutError as err:
        return err.problems
    problems = []
    for split in SPLITS:
        paths = [e.image for e in examples if e.split == split]
        sample = paths if full else paths[:1] + paths[-1:]
        missing = [p for p in sample if not Path(p).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more of {len(paths)})" if len(missing) > 1 else ""
            problems.append(f"{missing[0]}: image not found, listed in the {split} split{more}")
    return problems


def labels_of(examples: list[Example], classes: list[str], multi_label: bool) -> Tensor:
    index = {c: i for i, c in enumerate(classes)}
    if not multi_label:
        return torch.tensor([index[e.labels[0]] for e in examples], dtype=torch.long)
    out = torch.zeros(len(examples), len(classes))
    for row, e in enumerate(examples):
        out[row, [index[label] for label in e.labels]] = 1.0
    return out


def sample_shots(labels: Tensor, shots: int, seed: int) -> Tensor:
    """`shots` examples per class: single-label as `sample_few_shot`; multi-label (N, C) walks
    the classes in order, drawing among the examples of that class not drawn yet."""
    if labels.dim() == 1:
        return sample_few_shot(labels, range(int(labels.max()) + 1), shots, seed)
    rng = np.random.default_rng(seed)
    taken = np.zeros(len(labels), dtype=bool)
    has = labels.numpy() > 0
    for c in range(labels.shape[1]):
        pool = np.flatnonzero(has[:, c] & ~taken)
        taken[rng.choice(pool, size=min(shots, len(pool)), replace=False)] = True
    return torch.from_numpy(np.flatnonzero(taken))


def load(cfg: DataConfig, layout: FusionLayout) -> FusionTask:
    classes, examples = read(cfg, layout)
    splits, texts = {}, {}
    for split in SPLITS:
        chosen = [e for e in examples if e.split == split]
        labels = labels_of(chosen, classes, layout.multi_label)
        images = ImageFiles([e.image for e in chosen], layout.name)
        if split == "val":
            keep = sample_shots(labels, min(cfg.shots, VAL_SHOTS), VAL_SEED)
            chosen, images, labels = (
                [chosen[i] for i in keep.tolist()],
                images.select(keep),
                labels[keep],
            )
        splits[split], texts[split] = Split(images, labels), [e.text for e in chosen]
    names = [c.replace("_", " ") for c in classes]
    return FusionTask(
        name=layout.name, classnames=names, texts=texts, multi_label=layout.multi_label, **splits
    )


def augment_problems(cfg: DataConfig) -> list[str]:
    """Fusion training takes its images as stored (MoPE's code crops and flips none)."""
    if cfg.augment == "none":
        return []
    return [f"dataset.augment={cfg.augment} is not implemented for fusion datasets; use none"]


def _register(layout: FusionLayout) -> None:
    @register_dataset(layout.name, check=lambda cfg: augment_problems(cfg) + check(cfg, layout))
    def _load(cfg: DataConfig) -> Task:
        return load(cfg, layout)


for _layout in FUSION.values():
    _register(_layout)
