"""Datasets as base-to-new classification tasks, and the dataset registry."""

from trainers.data import digits, tiny_tasks  # noqa: F401  (register their datasets)
from trainers.data.datasets import (
    Split,
    Task,
    get_dataset,
    list_datasets,
    load_task,
    register_dataset,
)
from trainers.data.fewshot import sample_few_shot

__all__ = [
    "Split",
    "Task",
    "get_dataset",
    "list_datasets",
    "load_task",
    "register_dataset",
    "sample_few_shot",
]
