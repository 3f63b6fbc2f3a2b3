"""The schedulers a study may name in `scheduler.type`: one entry each, adding one is one entry.

An entry names its Ray Tune class (in `ray.tune.schedulers`), how the study's `scheduler:` fields
map to that class's keyword arguments, and the line `--dry-run` prints. The table imports no Ray,
so validation, the plan and the JSON Schema read it; `search/tuning.py` builds the Ray object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Fields(Protocol):
    """What an entry reads of the study's `scheduler:` section (`model.Scheduler`)."""

    @property
    def grace_epochs(self) -> int: ...

    @property
    def reduction_factor(self) -> float: ...


Kwargs = Callable[[Fields, int], dict[str, Any]]  # (the study's fields, epochs) -> kwargs
Plan = Callable[[Fields, int], str]


@dataclass(frozen=True)
class SchedulerEntry:
    ray_class: str  # a class of ray.tune.schedulers
    help: str  # one line for the JSON Schema
    kwargs: Kwargs
    plan: Plan
    knobs: tuple[str, ...] = ()  # the `scheduler:` fields it reads
    fidelity: bool = True  # it takes `time_attr`: the epoch is its unit of time
    ranks: bool = True  # it compares trials on one metric, so a study with several cannot use it


SCHEDULERS: dict[str, SchedulerEntry] = {
    "asha": SchedulerEntry(
        "ASHAScheduler",
        "asynchronous successive halving: stop weak trials at rungs",
        kwargs=lambda s, epochs: {
            "max_t": epochs,
            "grace_period": s.grace_epochs,
            "reduction_factor": s.reduction_factor,
        },
        plan=lambda s, epochs: (
            f"ASHA: stop weak trials at rungs from epoch {s.grace_epochs}, "
            f"keeping 1/{s.reduction_factor:g} at each rung, up to {epochs} epochs"
        ),
        knobs=("max_epochs", "grace_epochs", "reduction_factor"),
    ),
    "median": SchedulerEntry(
        "MedianStoppingRule",
        "stop a trial whose result falls below the running median of the others",
        kwargs=lambda s, epochs: {"grace_period": s.grace_epochs, "min_samples_required": 3},
        plan=lambda s, epochs: (
            f"median stopping: stop a trial below the running median after {s.grace_epochs} epochs"
        ),
        knobs=("grace_epochs",),
    ),
    "hyperband": SchedulerEntry(
        "AsyncHyperBandScheduler",
        "HyperBand's brackets, each run by asynchronous successive halving",
        kwargs=lambda s, epochs: {
            "max_t": epochs,
            "grace_period": s.grace_epochs,
            "reduction_factor": s.reduction_factor,
            "brackets": hyperband_brackets(s, epochs),
        },
        plan=lambda s, epochs: (
            f"HyperBand: {hyperband_brackets(s, epochs)} brackets of successive halving "
            f"(reduction factor {s.reduction_factor:g}) from epoch {s.grace_epochs} up to "
            f"{epochs} epochs"
        ),
        knobs=("max_epochs", "grace_epochs", "reduction_factor"),
    ),
    "none": SchedulerEntry(
        "FIFOScheduler",
        "no early stopping: every trial trains all its epochs",
        kwargs=lambda s, epochs: {},
        plan=lambda s, epochs: f"no early stopping: every trial trains {epochs} epochs",
        fidelity=False,
        ranks=False,
    ),
}


def names() -> tuple[str, ...]:
    return tuple(SCHEDULERS)


def unranked() -> tuple[str, ...]:
    """The schedulers that compare no trials: what a study with several objectives may use."""
    return tuple(name for name, entry in SCHEDULERS.items() if not entry.ranks)


def hyperband_brackets(s: Fields, epochs: int) -> int:
    """HyperBand's s_max + 1 brackets: floor(log_eta(max / grace)) + 1 (Li et al. 2018).

    Asynchronous, as Li et al. 2020 run HyperBand's brackets: Ray's synchronous
    HyperBandScheduler pauses each trial until its bracket fills, which a study's
    `max_concurrent` never lets happen, so it stopped no trial at all."""
    ratio = max(epochs / max(s.grace_epochs, 1), 1.0)
    return int(math.floor(math.log(ratio, s.reduction_factor) + 1e-9)) + 1
