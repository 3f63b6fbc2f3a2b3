"""The Pareto front of a study with several objectives: the configurations no other one beats
on every objective at once. Plain Python, shared by `ablate search`'s summary and by
`ablate report`."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], goals: Sequence[str]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one; goals are
    `maximize` or `minimize`, one per objective. Equal points dominate neither way."""
    signs = [1.0 if goal == "maximize" else -1.0 for goal in goals]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b))


def non_dominated(points: Sequence[Sequence[float]], goals: Sequence[str]) -> list[int]:
    """The indices of the points no other point dominates, in their given order (ties: each of
    two equal points stays, as neither beats the other)."""
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, goals) for j, q in enumerate(points) if j != i)
    ]
