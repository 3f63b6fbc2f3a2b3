"""Honest statistics beside each Δ: is it more than seed noise, how noisy are seeds next to the
differences between configurations, and how many seeds would a paired t-test need to confirm it.

Seeds needed: the smallest n (seeds, i.e. pairs) at which a two-sided paired t-test at alpha
0.05 has power 0.8 against the observed effect size d = Δ / sd of the paired differences, with
the exact power from the noncentral t distribution (df n - 1, noncentrality d·sqrt(n)). The
observed d is itself noisy with few seeds, so the answer is a planning figure, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ablate.report.analysis import normal_quantile, paired_power, t_quantile  # scipy lives there

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # beyond this the effect is indistinguishable from zero for any real budget
FEW_SEEDS = 3


def seeds_needed(delta: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Pairs needed to confirm `delta` (nan if unknown; inf past MAX_SEEDS or for Δ = 0)."""
    if math.isnan(delta) or math.isnan(sd):
        return math.nan
    if delta == 0:
        return math.inf
    if sd == 0:
        return 2.0  # differences without spread: any two pairs show it
    d = abs(delta) / sd
    guess = max(2, int(((normal_quantile(1 - alpha / 2) + normal_quantile(power)) / d) ** 2))
    n = max(2, guess - 2)  # the normal approximation is a lower bound: search upward from it
    while n <= MAX_SEEDS:
        if paired_power(d, n, alpha) >= power:
            return float(n)
        n += 1
    return math.inf


def seed_sd(samples: Sequence[Sequence[float]]) -> float:
    """Pooled within-configuration SD over seeds (configurations with at least two seeds)."""
    pairs = [(len(s) - 1, float(np.var(s, ddof=1))) for s in samples if len(s) >= 2]
    df = sum(d for d, _ in pairs)
    return math.sqrt(sum(d * v for d, v in pairs) / df) if df else math.nan


def between_sd(means: Sequence[float]) -> float:
    """SD of the configuration means (nan with fewer than two)."""
    valid = [m for m in means if not math.isnan(m)]
    return float(np.std(valid, ddof=1)) if len(valid) >= 2 else math.nan


def noise_line(samples: Sequence[Sequence[float]], metric: str) -> str:
    """'seed SD x.xx vs between-configuration SD y.yy' for one metric, with what it means."""
    within = seed_sd(samples)
    between = between_sd([float(np.mean(s)) if len(s) else math.nan for s in samples])
    line = f"{metric}: seed SD {_num(within)} vs between-configuration SD {_num(between)}"
    if not (math.isnan(within) or math.isnan(between)) and within >= between:
        line += " (seeds vary as much as configurations do: most differences are noise)"
    return line


def few_seeds_warning(seeds: int) -> str:
    """A plain warning when the intervals and tests carry no information ('' otherwise)."""
    if seeds >= FEW_SEEDS:
        return ""
    t = t_quantile(0.975, 1)
    what = (
        f"2 seeds give mean ± {t / math.sqrt(2):.1f} seed SDs, t = {t:.1f}"
        if seeds == 2
        else "one seed: no interval at all"
    )
    return (
        f"Warning: {seeds} seed(s) per configuration. The intervals and p-values carry no "
        f"information ({what}); run at least {FEW_SEEDS} seeds (see 'seeds needed')."
    )


def fmt_needed(n: float) -> str:
    if math.isnan(n):
        return "—"
    return f">{MAX_SEEDS}" if math.isinf(n) else str(int(n))


def _num(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"
