"""Evaluation protocols beyond base-to-new: which classes a run trains on and what it scores.

`dataset.protocol` picks one (docs/datasets.md#protocols):

- `base2new` (default): train on the base half of the classes; score `{split}/base`, `/new`,
  `/hm` (the loop's own `evaluate`; this module is not involved).
- `all`: train on few-shot images of every class; score `{split}/acc` on every class.
- `cross_dataset`: `all` on the source (ImageNet in the papers), then, after the last epoch, the
  whole test split of each target dataset on all its classes with its own class names and
  template: `test/<target>/acc` and their mean `test/cross_dataset/avg`. Standard targets: the
  other 10 CoOp datasets.
- `domain_generalization`: the same with ImageNet-V2, -Sketch, -A and -R as targets
  (`test/domain_generalization/avg`); -A and -R are scored on their 200 classes.

`dataset.targets` replaces the standard target list (e.g. the ones on disk). Targets are decoded
one evaluation batch at a time (`trainers.evaluation`), never whole, and are scored only
when the test split is (`train.test_at_end`): per-epoch model selection uses the source's val.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from trainers.configs import DataConfig
from trainers.data import Task, list_datasets, load_task
from trainers.data.fusion import FUSION
from trainers.data.imagenet_variants import TEMPLATE as IMAGENET_TEMPLATE
from trainers.data.imagenet_variants import VARIANTS
from trainers.data.layouts import LAYOUTS
from trainers.evaluation import ImagePrep, score

if TYPE_CHECKING:
    from trainers.configs import TrialConfig
    from trainers.prompted_clip import PromptedCLIP

STANDARD_TARGETS: dict[str, list[str]] = {
    "cross_dataset": [name for name in LAYOUTS if name != "imagenet"],
    "domain_generalization": list(VARIANTS),
}
EVAL_ONLY = frozenset(VARIANTS)  # datasets with a test split only


def trains_on_all(cfg: DataConfig) -> bool:
    return cfg.protocol != "base2new"


def train_classes(task: Task, cfg: DataConfig) -> range:
    """The classes few-shot training draws from: the base half, or all of them."""
    return range(len(task.classnames)) if trains_on_all(cfg) else task.base_classes


def targets(cfg: DataConfig) -> list[str]:
    """The datasets scored after training: `dataset.targets`, else the protocol's standard."""
    return list(cfg.targets) or STANDARD_TARGETS.get(cfg.protocol, [])


def target_config(cfg: DataConfig, name: str) -> DataConfig:
    """The source's config pointed at target `name` (same root and shots, its own template)."""
    return replace(
        cfg, name=name, template=template_of(name, cfg.template), protocol="all", targets=[]
    )


def template_of(name: str, default: str) -> str:
    """CoOp's hand-written template of a dataset (ImageNet's for its variants)."""
    if name in LAYOUTS:
        return LAYOUTS[name].template
    return IMAGENET_TEMPLATE if name in VARIANTS else default


def metric_names(cfg: DataConfig) -> list[str]:
    """Every metric name a run of `cfg` reports (besides train/* and diag/*)."""
    from trainers.data.fusion import fusion_metric_names

    fusion = fusion_metric_names(cfg.name)
    if fusion is not None:
        return fusion
    if not trains_on_all(cfg):
        return [f"{s}/{m}" for s in ("val", "test") for m in ("base", "new", "hm")]
    names = ["val/acc", "test/acc"]
    chosen = targets(cfg)
    if chosen:
        names += [f"test/{t}/acc" for t in chosen] + [f"test/{cfg.protocol}/avg"]
    return names


def check(cfg: DataConfig) -> list[str]:
    """Problems with the protocol itself: unknown or eval-only datasets, missing targets."""
    problems = []
    if cfg.name in EVAL_ONLY:
        problems.append(
            f"dataset.name: {cfg.name} has a test split only; use it as one of "
            "dataset.targets (protocol domain_generalization)"
        )
    if cfg.name in FUSION and cfg.protocol not in ("base2new", "all"):
        problems.append(
            f"dataset.protocol: {cfg.name} is a fusion dataset, trained and scored on "
            "all its classes (trainers.fusion); leave dataset.protocol at base2new"
        )
    known = set(list_datasets())
    for name in targets(cfg):
        if name not in known:
            problems.append(f"dataset.targets: {name!r} is not a registered dataset")
        elif name in FUSION:
            problems.append(f"dataset.targets: {name!r} is a fusion dataset (image + text)")
        elif name == cfg.name:
            problems.append(f"dataset.targets: {name!r} is the source dataset itself")
    return problems


def check_targets(cfg: DataConfig) -> list[str]:
    """Each target's own dataset check (files on disk), prefixed with its name."""
    from trainers.data import check as check_dataset

    problems = []
    for name in targets(cfg):
        if name in set(list_datasets()) and name != cfg.name:
            problems += [f"target {name}: {p}" for p in check_dataset(target_config(cfg, name))]
    return problems


# -- evaluation ----------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: PromptedCLIP, task: Task, split_name: str, prep: ImagePrep, cfg: TrialConfig
) -> dict[str, float]:
    """`{split}/acc` on all classes of the source; after training also every target's."""
    model.eval()
    split = getattr(task, split_name)
    keys = [(task.name, split_name, i) for i in range(len(split))]
    keep = split_name == cfg.train.eval_split  # as the loop: reuse only the per-epoch split
    size = cfg.dataset.eval_batch_size
    result = {
        f"{split_name}/acc": score(
            model, split, task.classnames, prep, (split_name, "all"), size, keys if keep else None
        )
    }
    if split_name == "test" and targets(cfg.dataset):
        scores = [evaluate_target(model, name, prep, cfg) for name in targets(cfg.dataset)]
        result |= {f"test/{name}/acc": acc for name, acc in zip(targets(cfg.dataset), scores)}
        result[f"test/{cfg.dataset.protocol}/avg"] = sum(scores) / len(scores)
    return result


def evaluate_target(model: PromptedCLIP, name: str, prep: ImagePrep, cfg: TrialConfig) -> float:
    """Accuracy on the whole test split of target `name`, all its classes, its own template."""
    target_cfg = target_config(cfg.dataset, name)
    target = load_task(target_cfg)
    with _template(model, target_cfg.template):
        size = cfg.dataset.eval_batch_size
        return score(model, target.test, target.classnames, prep, ("target", name), size)


@contextlib.contextmanager
def _template(model: PromptedCLIP, template: str) -> Iterator[None]:
    """Score with another dataset's template (the engine keys its text caches by template)."""
    old, model.template = model.template, template
    try:
        yield
    finally:
        model.template = old
