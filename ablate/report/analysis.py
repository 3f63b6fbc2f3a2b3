"""The statistics behind `ablate report`, on plain rows of the results table (no I/O here).

A *configuration* is one combination of the searched factors, with the dataset factor (if the
study searches `dataset` / `dataset.name`) taken out: its cells are its (dataset, seed) *units*.
Each configuration is summarised at its last epoch, over completed trials only (pruned trials
never reach the end, so their numbers are not comparable), as mean ± 95% CI over seeds
(t-distribution; with several datasets, over seeds of the dataset mean). Every configuration is
compared with the reference one by a paired t-test over the units both share, and the p-values
of one metric column are Holm-corrected together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

FIXED_COLUMNS = ("study", "trial_id", "trial_name", "trial_key", "seed", "epoch", "wall_s")
DATASET_KEYS = ("dataset", "dataset.name")
VARIANT = "variant"
Unit = tuple[Any, int]  # (dataset or None, seed)


@dataclass
class Config:
    """One configuration: its factor values, its trials and its final value per unit."""

    factors: dict[str, Any]
    trials: list[str] = field(default_factory=list)
    trial_keys: list[str] = field(default_factory=list)
    units: dict[str, dict[Unit, float]] = field(default_factory=dict)  # metric -> unit -> value

    @property
    def label(self) -> str:
        if VARIANT in self.factors:
            rest = {k: v for k, v in self.factors.items() if k != VARIANT}
            return " ".join([str(self.factors[VARIANT]), *_short_pairs(rest)])
        return " ".join(sorted(set(self.trials)))

    def seed_values(self, metric: str) -> list[float]:
        """Per seed, the mean over datasets: the sample the CI is computed on."""
        by_seed: dict[int, list[float]] = {}
        for (_, seed), value in self.units.get(metric, {}).items():
            by_seed.setdefault(seed, []).append(value)
        return [float(np.mean(v)) for _, v in sorted(by_seed.items())]

    def mean(self, metric: str) -> float:
        values = self.seed_values(metric)
        return float(np.mean(values)) if values else math.nan


@dataclass
class Comparison:
    """A configuration against the reference on one metric."""

    delta: float
    p: float
    n: int
    p_holm: float = math.nan
    sd: float = math.nan  # SD of the paired differences: the seed noise Δ is judged against

    @property
    def marker(self) -> str:
        return significance_marker(self.p_holm)

    @property
    def beyond_noise(self) -> bool | None:
        """Holm-adjusted paired t-test at alpha 0.05; None when it cannot be tested."""
        return None if math.isnan(self.p_holm) else self.p_holm < 0.05


def parameter_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Searched parameters: every column that is neither fixed nor a metric (metrics have '/')."""
    keys = {k for r in rows for k in r} - set(FIXED_COLUMNS) - {"status"}
    return sorted(k for k in keys if "/" not in k)


def metric_columns(rows: Sequence[dict[str, Any]], prefix: str = "") -> list[str]:
    keys = {k for r in rows for k, v in r.items() if "/" in k and v is not None}
    return sorted(k for k in keys if k.startswith(prefix))


def final_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last-epoch row of every (trial, seed) of a completed trial."""
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "completed":
            continue
        key = (row["trial_key"], row["seed"])
        if key not in last or row["epoch"] > last[key]["epoch"]:
            last[key] = row
    return list(last.values())


def choose_split(final: Sequence[dict[str, Any]], metric: str) -> str:
    """`test` when every completed cell has test metrics, else the split of the study metric."""
    if final and all(
        any(k.startswith("test/") and v is not None for k, v in r.items()) for r in final
    ):
        return "test"
    return metric.split("/", 1)[0] if "/" in metric else "val"


def split_metrics(final: Sequence[dict[str, Any]], split: str) -> list[str]:
    """The columns of the ablation table: base / new / HM under base-to-new; otherwise what the
    protocol reports on `split` (acc or F1, each target's accuracy, the protocol's average)."""
    present = set(metric_columns(final, f"{split}/"))
    base2new = [f"{split}/{m}" for m in ("base", "new", "hm") if f"{split}/{m}" in present]
    if base2new:
        return base2new
    return sorted(present, key=lambda k: (k.endswith("/avg"), k.count("/"), k))


def configurations(
    final: Sequence[dict[str, Any]], params: Sequence[str], metrics: Sequence[str]
) -> list[Config]:
    """Group the final rows by the searched factors (the dataset factor becomes a unit)."""
    factors = [p for p in params if p not in DATASET_KEYS]
    datasets = [p for p in params if p in DATASET_KEYS]
    groups: dict[str, Config] = {}
    for row in final:
        values = {k: row.get(k) for k in factors}
        config = groups.setdefault(_key(values), Config(values))
        if row["trial_name"] not in config.trials:
            config.trials.append(row["trial_name"])
            config.trial_keys.append(row["trial_key"])
        unit = (tuple(row.get(k) for k in datasets) or None, int(row["seed"]))
        for metric in metrics:
            if row.get(metric) is not None:
                config.units.setdefault(metric, {})[unit] = float(row[metric])
    return list(groups.values())


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-interval (nan with fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    sem = float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem


def paired(variant: dict[Unit, float], reference: dict[Unit, float]) -> Comparison:
    """Mean paired difference over the shared units and the two-sided paired t-test p-value."""
    units = sorted(set(variant) & set(reference), key=str)
    diffs = np.array([variant[u] - reference[u] for u in units], dtype=float)
    if len(diffs) == 0:
        return Comparison(math.nan, math.nan, 0)
    delta = float(diffs.mean())
    sd = float(diffs.std(ddof=1)) if len(diffs) >= 2 else math.nan
    if len(diffs) < 2 or sd == 0.0:
        p = 1.0 if delta == 0 and len(diffs) >= 2 else math.nan
        return Comparison(delta, p, len(diffs), sd=sd)
    return Comparison(delta, float(stats.ttest_1samp(diffs, 0.0).pvalue), len(diffs), sd=sd)


def t_quantile(q: float, df: int) -> float:
    return float(stats.t.ppf(q, df))


def normal_quantile(q: float) -> float:
    return float(stats.norm.ppf(q))


def paired_power(d: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired (one-sample) t-test with n pairs at effect size d: the
    noncentral t with df n - 1 and noncentrality d * sqrt(n) beyond the critical values."""
    if n < 2:
        return 0.0
    df, nc = n - 1, abs(d) * math.sqrt(n)
    crit = t_quantile(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and is not counted in the family)."""
    valid = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[i] = running
    return adjusted


def significance_marker(p: float) -> str:
    if math.isnan(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def order(configs: list[Config], metric: str, goal: str) -> list[Config]:
    """Reference first: the `base` variant of an ablation, else the best configuration by the
    study metric; then the variants in design order, or the rest best first."""
    if any(c.factors.get(VARIANT) == "base" for c in configs):
        return sorted(configs, key=lambda c: c.factors.get(VARIANT) != "base")
    sign = -1.0 if goal == "maximize" else 1.0
    return sorted(configs, key=lambda c: _nan_last(sign * c.mean(metric)))


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def compare_all(configs: list[Config], metrics: Sequence[str]) -> list[dict[str, Comparison]]:
    """Per configuration (the first is the reference), metric -> Comparison, Holm per metric."""
    reference = configs[0]
    out: list[dict[str, Comparison]] = [{} for _ in configs]
    for metric in metrics:
        comps = [paired(c.units.get(metric, {}), reference.units.get(metric, {})) for c in configs]
        adjusted = holm([c.p for c in comps[1:]])
        for i, comp in enumerate(comps):
            comp.p_holm = adjusted[i - 1] if i else math.nan
            out[i][metric] = comp
    return out


def _short_pairs(values: dict[str, Any]) -> list[str]:
    return [f"{k.rsplit('.', 1)[-1]}={_fmt_value(v)}" for k, v in sorted(values.items())]


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")
