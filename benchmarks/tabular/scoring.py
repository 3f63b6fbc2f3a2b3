"""Scoring a replayed search against the grid: compute consumed until the incumbent is good.

A search is a list of `Event`s in the order the epochs were consumed. The incumbent after each
event is the trial whose last reported validation metric is the best (as `ablate search`'s
summary and Ray's `get_best_result` pick it); it is judged by its configuration's test HM at the
last epoch, mean over the grid's seeds. The target is the grid optimum's test HM: the
configuration with the best validation seed mean at the last epoch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ablate.search.replay import Table, config_key

VAL, TEST = "val/hm", "test/hm"
WITHIN = 1.0  # points of test HM
BUDGET = 0.25  # the goal: a good configuration for <= 1/4 of the grid's compute


@dataclass(frozen=True)
class Event:
    """One epoch of one trial: `seeds` seed-epochs of training consumed, `val` reported."""

    trial: str
    config: str  # replay.config_key of its values
    epoch: int
    seeds: int
    val: float


@dataclass
class Grid:
    """What the scoring needs of the table: per configuration, its final test seed mean."""

    test: dict[str, float]
    optimum: str
    seed_epochs: int  # the full grid's training: configurations x seeds x epochs
    epochs: int  # a configuration's last epoch

    @property
    def target(self) -> float:
        return self.test[self.optimum]


def summarise(table: Table) -> Grid:
    final_val, final_test, total = {}, {}, 0
    for key, by_seed in table.cells.items():
        curves = list(by_seed.values())
        total += sum(len(c) for c in curves)
        final_val[key] = statistics.fmean(c[-1][VAL] for c in curves)
        final_test[key] = statistics.fmean(c[-1][TEST] for c in curves)
    optimum = max(final_val, key=final_val.__getitem__)
    epochs = max(len(c) for by_seed in table.cells.values() for c in by_seed.values())
    return Grid(final_test, optimum, total, epochs)


def key_of(table: Table, values: dict[str, Any]) -> str:
    return config_key({k: values[k] for k in table.parameters})


@dataclass
class Score:
    """Compute as fractions of the grid's seed-epochs; inf where the search never got there."""

    to_target: float  # until the incumbent is first within WITHIN points of the optimum
    for_good: float  # until it is within and stays within to the end of the search
    final_within: bool
    consumed: float  # the whole search
    at_budget: bool  # within when BUDGET of the grid was used (or at the end, if sooner)


def score(events: list[Event], grid: Grid, reuse: bool = False) -> Score:
    """With `reuse` (ablate), an epoch of a configuration that already finished costs nothing:
    `ablate search` reuses the (configuration, seed) cells its results table holds to the last
    epoch when a searcher proposes a configuration again, where the peers train it again."""
    last: dict[str, tuple[float, str]] = {}  # trial -> (last val, config)
    finished: set[str] = set()
    used, first, since = 0, math.inf, math.inf
    at_budget = None
    for event in events:
        cost = 0 if reuse and event.config in finished else event.seeds
        if at_budget is None and (used + cost) / grid.seed_epochs > BUDGET:
            at_budget = since < math.inf
        used += cost
        if event.epoch == grid.epochs:
            finished.add(event.config)
        last[event.trial] = (event.val, event.config)
        incumbent = max(last.values())[1]
        if grid.test[incumbent] >= grid.target - WITHIN:
            first = min(first, used / grid.seed_epochs)
            since = min(since, used / grid.seed_epochs)
        else:
            since = math.inf
    final = since < math.inf
    return Score(
        first, since, final, used / grid.seed_epochs, final if at_budget is None else at_budget
    )


def row(name: str, scores: list[Score]) -> str:
    """A markdown row: median [IQR] of the compute to target (first, for good), the share of
    repeats ending within, the median compute of a whole search."""
    cells = []
    for field in ("to_target", "for_good"):
        ordered = sorted(getattr(s, field) for s in scores)
        q1, med, q3 = (quantile(ordered, p) for p in (0.25, 0.5, 0.75))
        cells.append(f"{_f(med)} [{_f(q1)}, {_f(q3)}]")
    within = sum(s.final_within for s in scores) / len(scores)
    at_budget = sum(s.at_budget for s in scores) / len(scores)
    used = statistics.median(s.consumed for s in scores)
    return (
        f"| {name} | {len(scores)} | {cells[0]} | {cells[1]} | {at_budget:.2f} | {within:.2f} "
        f"| {used:.2f} |"
    )


HEADER = (
    "| strategy | repeats | compute until first within 1 pt: median [IQR] | until within 1 pt "
    f"for good | within 1 pt at {BUDGET:g} of the grid | ending within 1 pt | compute of the "
    "whole search |\n|---|---|---|---|---|---|---|"
)


def quantile(ordered: list[float], p: float) -> float:
    """Linear interpolation between order statistics; `never` (inf) stays inf."""
    position = p * (len(ordered) - 1)
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    if high == math.inf:
        return high
    return low + (high - low) * (position - math.floor(position))


def _f(x: float) -> str:
    return "never" if x == math.inf else f"{x:.3f}"
