"""The figures of `ablate report`, drawn with matplotlib (Agg) and returned as PNG bytes, so the
caller can both write them to files and embed them in the self-contained HTML report."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

STATUS_STYLE = {
    "completed": {"linestyle": "-", "alpha": 0.9},
    "pruned": {"linestyle": "--", "alpha": 0.6},
    "failed": {"linestyle": ":", "alpha": 0.5, "color": "0.5"},
}
plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False})


@dataclass
class Curve:
    """One trial's seed-mean metric per epoch and how it ended."""

    name: str
    status: str
    epochs: list[int]
    values: list[float]
    label: str = ""  # legend text (trial name and its variant or values); shown for few trials


@dataclass
class Effect:
    """One factor: per level (or value) the mean and CI over seeds, and each config's point."""

    key: str
    levels: list[Any]
    means: list[float]
    lows: list[float]
    highs: list[float]
    points: list[tuple[Any, float]] = field(default_factory=list)
    log: bool = False
    numeric: bool = False


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def learning_curves(curves: Sequence[Curve], metric: str, best: str | None = None) -> bytes:
    """Every trial; pruned ones dashed and ending in an x at the epoch the scheduler stopped
    them, so the rungs of ASHA are visible."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 1)))
    for curve, color in zip(curves, colors):
        style = dict(STATUS_STYLE.get(curve.status, STATUS_STYLE["completed"]))
        style.setdefault("color", color)
        width = 2.6 if curve.name == best else 1.3
        label = (curve.label or curve.name) if len(curves) <= 12 else None
        ax.plot(curve.epochs, curve.values, linewidth=width, label=label, **style)
        if curve.status == "pruned" and curve.epochs:
            ax.plot(curve.epochs[-1], curve.values[-1], "x", color=style["color"], markersize=8)
        if curve.name == best and curve.epochs:
            ax.annotate(f"best {best}", (curve.epochs[-1], curve.values[-1]),
                        xytext=(4, 0), textcoords="offset points", fontsize=8)  # fmt: skip
    if any(c.status == "pruned" for c in curves):
        ax.plot([], [], "k--x", label="pruned (x: stopped)")
    if any(c.status == "failed" for c in curves):
        ax.plot([], [], ":", color="0.5", label="failed")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (seed mean)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"Learning curves of {len(curves)} trials")
    return png(fig)


def parallel_coordinates(
    points: Sequence[dict[str, Any]], keys: Sequence[str], metric: str, log_keys: set[str]
) -> bytes:
    """One line per finished trial across every searched parameter and the metric; colour is
    the metric, pruned trials are grey."""
    axes_keys = [*keys, metric]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(axes_keys)), 4.2))
    scaled, ticks = zip(*(_axis(points, k, k in log_keys) for k in axes_keys))
    finals = [p[metric] for p in points if p["status"] == "completed"] or [0.0]
    norm = plt.Normalize(min(finals), max(finals))
    for i, point in enumerate(points):
        ys = [column[i] for column in scaled]
        done = point["status"] == "completed"
        color = plt.cm.viridis(norm(point[metric])) if done else "0.75"
        ax.plot(range(len(axes_keys)), ys, color=color, alpha=0.85 if done else 0.5,
                linestyle="-" if done else "--", linewidth=1.4)  # fmt: skip
    for x, labels in enumerate(ticks):
        ax.axvline(x, color="0.3", linewidth=0.8)
        for y, text in labels:
            ax.text(x + 0.03, y, text, fontsize=7, va="center", color="0.25")
    ax.set_xticks(range(len(axes_keys)), [k.rsplit(".", 1)[-1] for k in axes_keys])
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_ylim(-0.05, 1.05)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=ax, label=metric, fraction=0.04)
    ax.set_title("Parallel coordinates (grey dashed: pruned, at its last epoch)")
    return png(fig)


def _axis(
    points: Sequence[dict[str, Any]], key: str, log: bool
) -> tuple[list[float], list[tuple[float, str]]]:
    """Values of one axis scaled to [0, 1], and a few (position, label) ticks."""
    values = [p.get(key) for p in points]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric:
        levels = sorted({str(v) for v in values})
        pos = {v: (i / (len(levels) - 1) if len(levels) > 1 else 0.5) for i, v in enumerate(levels)}
        return [pos[str(v)] for v in values], [(pos[v], v[:14]) for v in levels]
    raw = [math.log10(v) if log and v > 0 else float(v) for v in values]
    lo, hi = min(raw), max(raw)
    span = hi - lo or 1.0
    scaled = [(r - lo) / span if hi > lo else 0.5 for r in raw]
    ends = [(0.0, lo), (1.0, hi)] if hi > lo else [(0.5, lo)]
    return scaled, [(y, f"{10**r if log else r:.3g}") for y, r in ends]


def factor_effects(effects: Sequence[Effect], metric: str) -> bytes:
    """Per factor: each configuration's seed mean (dots) and the mean ± 95% CI band over seeds
    of the configurations sharing a value (marginal over the other factors)."""
    cols = min(3, len(effects))
    rows = math.ceil(len(effects) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, effect in zip(axes.flat, effects):
        _effect_panel(ax, effect, metric)
    for ax in list(axes.flat)[len(effects) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return png(fig)


def _effect_panel(ax: Any, effect: Effect, metric: str) -> None:
    """Numbers: a line with a CI band; choices: a point with a CI bar per choice."""
    lows = [m if math.isnan(lo) else lo for m, lo in zip(effect.means, effect.lows)]
    highs = [m if math.isnan(hi) else hi for m, hi in zip(effect.means, effect.highs)]
    if effect.numeric:
        xs = [float(v) for v in effect.levels]
        point_x = [float(x) for x, _ in effect.points]
        ax.plot(xs, effect.means, "-o", color="C0", zorder=3)
        ax.fill_between(xs, lows, highs, color="C0", alpha=0.2, linewidth=0)
        if all(isinstance(v, int) for v in effect.levels) and len(xs) <= 8:
            ax.set_xticks(xs, [str(v) for v in effect.levels])
    else:
        position = {str(v): i for i, v in enumerate(effect.levels)}
        xs = list(range(len(effect.levels)))
        point_x = [position[str(x)] for x, _ in effect.points]
        errors = [[m - lo for m, lo in zip(effect.means, lows)],
                  [hi - m for m, hi in zip(effect.means, highs)]]  # fmt: skip
        ax.errorbar(xs, effect.means, yerr=errors, fmt="o", color="C0", capsize=4, zorder=3)
        ax.set_xticks(xs, [str(v)[:16] for v in effect.levels], rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.scatter(point_x, [y for _, y in effect.points], s=14, color="0.55", zorder=2)
    if effect.log:
        ax.set_xscale("log")
    ax.set_xlabel(effect.key)
    ax.set_ylabel(metric)


def importance_bars(importances: dict[str, float], evaluator: str) -> bytes:
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="C0")
    for y, (_, value) in enumerate(items):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel(f"importance ({evaluator}, normalised)")
    ax.set_xlim(0, max([v for _, v in items] + [0.01]) * 1.15)
    return png(fig)


def heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str) -> bytes:
    data = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    image = ax.imshow(data, vmin=-1, vmax=1, cmap="RdBu_r")
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=10)
    return png(fig)


def bars(values: Sequence[float], labels: Sequence[str], title: str, ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(max(3.5, 0.5 * len(values) + 1.5), 3.0))
    ax.bar(labels, values, color="C0")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return png(fig)


def pareto_scatter(
    points: Sequence[tuple[float, float, str, bool]],
    x: tuple[str, str],
    y: tuple[str, str],
) -> bytes:
    """Every configuration on two objectives (name, goal); the front (points marked True) in
    colour, joined in order of x and labelled with its configuration."""
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    rest = [p for p in points if not p[3]]
    front = sorted((p for p in points if p[3]), key=lambda p: p[0])
    ax.scatter([p[0] for p in rest], [p[1] for p in rest], s=22, color="0.65", label="dominated")
    ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="C3", markersize=6,
            label="Pareto front", zorder=3)  # fmt: skip
    for px, py, label, _ in front[:12]:
        ax.annotate(label[:24], (px, py), xytext=(4, 4), textcoords="offset points", fontsize=7)
    for axis, (name, goal), values in ((ax.xaxis, x, [p[0] for p in points]),
                                       (ax.yaxis, y, [p[1] for p in points])):  # fmt: skip
        better = "higher" if goal == "maximize" else "lower"
        axis.set_label_text(f"{name} ({better} is better)")
        if values and min(values) > 0 and max(values) / min(values) >= 100:
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Pareto front: {len(front)} of {len(points)} configurations")
    return png(fig)
