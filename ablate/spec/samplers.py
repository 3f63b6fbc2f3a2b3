"""The samplers a study may name in `search.algorithm`: one entry each, adding one is one entry.

An entry names its Optuna class (in `optuna.samplers`) and how the study maps to that class's
keyword arguments. The table imports no Optuna, so validation, the plan and the JSON Schema read
it; `search/space.py` builds the sampler, which Ray's `OptunaSearch` wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplerInputs:
    """What a sampler may be built from."""

    seed: int  # the study's `search.seed`, moved on by each invocation (an extension)
    trials: int
    grid: dict[str, list[Any]] = field(default_factory=dict)  # key -> its encoded `values`


@dataclass(frozen=True)
class SamplerEntry:
    optuna_class: str  # a class of optuna.samplers
    help: str  # one line for the JSON Schema
    kwargs: Callable[[SamplerInputs], dict[str, Any]]
    # every combination of `values` once: each parameter needs `values`, the grid sets the count
    exhaustive: bool = False


def _startup_trials(trials: int) -> int:
    # TPE models nothing until it has seen some trials; keep a few random ones on small budgets
    return max(2, min(10, trials // 3))


SAMPLERS: dict[str, SamplerEntry] = {
    "tpe": SamplerEntry(
        "TPESampler",
        "tree-structured Parzen estimator (Bayesian), after a few random trials",
        kwargs=lambda s: {"seed": s.seed, "n_startup_trials": _startup_trials(s.trials)},
    ),
    "random": SamplerEntry(
        "RandomSampler", "independent random draws", kwargs=lambda s: {"seed": s.seed}
    ),
    "grid": SamplerEntry(
        "GridSampler",
        "every combination of the parameters' values (search.trials is ignored)",
        kwargs=lambda s: {"search_space": s.grid, "seed": s.seed},
        exhaustive=True,
    ),
}


def names() -> tuple[str, ...]:
    return tuple(SAMPLERS)
