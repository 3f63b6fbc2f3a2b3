"""Datasets as base-to-new classification tasks, and the dataset registry."""

# importing a module registers its datasets: digits, tiny_*, the CoOp-layout ones, imagenet,
# its variants (imagenet_variants) and the fusion manifests (fusion)
from trainers.data import (  # noqa: F401
    digits,
    fusion,
    imagenet,
    imagenet_variants,
    layouts,
    tiny_tasks,
)
from trainers.data.datasets import (
    Split,
    Task,
    check,
    get_dataset,
    list_datasets,
    load_task,
    register_dataset,
)
from trainers.data.fewshot import sample_few_shot

__all__ = [
    "Split",
    "Task",
    "check",
    "get_dataset",
    "list_datasets",
    "load_task",
    "register_dataset",
    "sample_few_shot",
]
