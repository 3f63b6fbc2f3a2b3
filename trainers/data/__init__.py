"""Datasets as base-to-new classification tasks, and the dataset registry."""

# importing a module registers its datasets: digits, tiny_*, the CoOp-layout ones, imagenet
from trainers.data import digits, imagenet, layouts, tiny_tasks  # noqa: F401
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
