"""What the scheduler learned: pruned trials analysed at matched fidelity.

A pruned trial stopped early, so its last value is not comparable with a completed trial's final
one; at the same epoch it is. The *rungs* are the epochs at which the scheduler compared trials:
ASHA's grace * rf^k, every epoch from the grace period for median stopping, about max / rf^k for
HyperBand (from the study's spec), else the epochs at which pruned trials stopped. At each rung,
every trial that reached it enters with its seed-mean value at that epoch, and each factor gets
its level means and its main-effect variance share (eta squared: the share of the variance
between those trials explained by the factor alone; factors searched together can overlap, so
shares need not sum to 1). A factor that varies only among pruned trials keeps its rung figures
and is never scored 0 from the completed trials alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ablate.results import uncell

Curves = dict[str, dict[str, Any]]  # summary.trial_curves: name -> status, key, row, curve
MAX_LEVELS = 6  # numbers with more distinct values are split into BINS quantile bins
BINS = 3


@dataclass
class FactorAtRung:
    factor: str
    levels: list[tuple[str, float, int]]  # level, mean over trials, trials behind it
    share: float  # eta squared; nan when the factor takes one level at this rung


@dataclass
class Rung:
    epoch: int
    trials: int  # trials that reached this epoch
    stopped: int  # trials the scheduler stopped here
    factors: list[FactorAtRung]


@dataclass
class Fidelity:
    rungs: list[Rung]
    source: str  # how the rungs were found
    pruned_only: list[str] = field(default_factory=list)  # vary only among pruned trials
    importance_epoch: int | None = None  # the common rung importance is estimated at
    not_estimable: dict[str, str] = field(default_factory=dict)  # factor -> why, at that rung


def scheduler_rungs(
    scheduler: dict[str, Any] | None, last: int, stops: Sequence[int]
) -> tuple[list[int], str]:
    """The epochs the scheduler compared trials at (up to the last epoch any trial reached)."""
    kind = (scheduler or {}).get("type", "")
    top = int((scheduler or {}).get("max_epochs") or 0) or last
    grace = max(1, int((scheduler or {}).get("grace_epochs", 1)))
    rf = float((scheduler or {}).get("reduction_factor", 3.0))
    if kind in ("asha", "hyperband") and rf > 1:  # HyperBand's brackets share ASHA's rungs
        found = {int(round(grace * rf**k)) for k in range(64) if grace * rf**k < top} | {top}
        name = "ASHA" if kind == "asha" else "HyperBand"
        source = f"{name} rungs: grace {grace} x {rf:g}^k up to {top} epochs"
    elif kind == "median":
        found, source = set(range(grace, top + 1)), f"median stopping: every epoch from {grace}"
    elif kind == "none":
        found, source = {top}, "no scheduler: only the last epoch"
    else:
        found = set(stops) | {last}
        source = "the epochs at which pruned trials stopped (the study's scheduler is unknown)"
    return sorted(e for e in found if 1 <= e <= last), source


def analyse(curves: Curves, params: Sequence[str], scheduler: dict[str, Any] | None) -> Fidelity:
    trials = {n: t for n, t in curves.items() if t["status"] != "failed" and t["curve"]}
    if not trials:
        return Fidelity([], "no trial reported the metric yet")
    last = max(max(t["curve"]) for t in trials.values())
    stops = [max(t["curve"]) for t in trials.values() if t["status"] == "pruned"]
    epochs, source = scheduler_rungs(scheduler, last, stops)
    levels = {k: _leveller([uncell(t["row"].get(k)) for t in trials.values()]) for k in params}
    varied = [k for k in params if len({levels[k](uncell(t["row"].get(k))) for t in
                                        trials.values()}) > 1]  # fmt: skip
    done = [t for t in trials.values() if t["status"] == "completed"]
    pruned_only = [k for k in varied if len({_key(t["row"].get(k)) for t in done}) <= 1]
    rungs = [_rung(trials, e, varied, levels) for e in epochs]
    fidelity = Fidelity([r for r in rungs if r.trials], source, pruned_only)
    _choose_common_rung(fidelity, varied)
    return fidelity


def _rung(trials: Curves, epoch: int, factors: list[str], levels: dict[str, Any]) -> Rung:
    there = [t for t in trials.values() if epoch in t["curve"]]
    stopped = sum(1 for t in there if t["status"] == "pruned" and max(t["curve"]) == epoch)
    values = np.array([t["curve"][epoch] for t in there], dtype=float)
    out = []
    for key in factors:
        labels = [levels[key](uncell(t["row"].get(key))) for t in there]
        out.append(_factor(key, labels, values))
    return Rung(epoch, len(there), stopped, out)


def _factor(key: str, labels: list[str], values: np.ndarray) -> FactorAtRung:
    groups: dict[str, list[float]] = {}
    for label, value in zip(labels, values, strict=True):
        groups.setdefault(label, []).append(float(value))
    levels = [(lv, float(np.mean(v)), len(v)) for lv, v in sorted(groups.items(), key=_order)]
    return FactorAtRung(key, levels, eta_squared(groups) if len(groups) > 1 else math.nan)


def eta_squared(groups: dict[str, list[float]]) -> float:
    """Between-level sum of squares over the total one (0 when all values are equal)."""
    values = [v for g in groups.values() for v in g]
    grand = float(np.mean(values))
    total = sum((v - grand) ** 2 for v in values)
    between = sum(len(g) * (float(np.mean(g)) - grand) ** 2 for g in groups.values())
    return between / total if total > 0 else 0.0


def _choose_common_rung(fidelity: Fidelity, varied: list[str]) -> None:
    """The highest rung at which every varied factor still takes two levels (at least three
    trials), else the rung with the most trials; factors constant there are not estimable."""
    rungs = [r for r in fidelity.rungs if r.trials >= 3] or fidelity.rungs
    if not rungs:
        return
    full = [r for r in rungs if all(not math.isnan(f.share) for f in r.factors)]
    chosen = full[-1] if full else max(rungs, key=lambda r: (r.trials, -r.epoch))
    fidelity.importance_epoch = chosen.epoch
    for f in chosen.factors:
        if math.isnan(f.share):
            why = "varies only among pruned trials" if f.factor in fidelity.pruned_only else ""
            fidelity.not_estimable[f.factor] = why or f"one value at epoch {chosen.epoch}"


def status_of(fidelity: Fidelity, factor: str, score: float | None) -> str:
    """What the report says of a factor's importance: its score, or why there is none."""
    if factor in fidelity.not_estimable:
        return f"not estimable ({fidelity.not_estimable[factor]})"
    return "—" if score is None or math.isnan(score) else f"{score:.2f}"


def _leveller(values: list[Any]) -> Any:
    """value -> level label: the value itself, or its quantile bin for many distinct numbers."""
    distinct = {_key(v) for v in values}
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(distinct) <= MAX_LEVELS or len(numbers) != len(values):
        return lambda v: _key(v)
    edges = [float(e) for e in np.quantile(numbers, [i / BINS for i in range(1, BINS)])]

    def label(v: Any) -> str:
        i = int(np.searchsorted(edges, float(v), side="right"))
        low = f"{edges[i - 1]:.3g}" if i else "min"
        high = f"{edges[i]:.3g}" if i < len(edges) else "max"
        return f"[{low}, {high}]"

    return label


def _key(value: Any) -> str:
    value = uncell(value)
    return value if isinstance(value, str) and value else json.dumps(value, default=str)


def _order(item: tuple[str, list[float]]) -> tuple[int, float, str]:
    try:
        return (0, float(item[0].strip("[").split(",")[0].replace("min", "-inf")), item[0])
    except ValueError:
        return (1, 0.0, item[0])
