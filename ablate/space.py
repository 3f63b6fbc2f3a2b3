"""Optuna lives here and only here: spec parameters -> distributions, algorithm -> sampler.

Ray's `OptunaSearch` wraps the result, so tpe, random and grid are one code path with three
Optuna samplers. Categorical choices Optuna cannot store (lists, e.g. an MPL carry schedule) are
encoded as JSON strings and decoded with `decode` before a trial composes its config.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

if TYPE_CHECKING:
    from ablate.spec import Parameter, StudySpec

_PRIMITIVE = (type(None), bool, int, float, str)
_ENCODED = "json:"


def to_distributions(params: list[Parameter]) -> dict[str, BaseDistribution]:
    return {p.key: _distribution(p) for p in params}


def _distribution(p: Parameter) -> BaseDistribution:
    if p.is_discrete:
        return CategoricalDistribution([_encode(v) for v in p.values])
    if p.distribution == "int_uniform":
        return IntDistribution(int(p.min), int(p.max))
    if p.distribution == "log_uniform_values":
        return FloatDistribution(p.min, p.max, log=True)
    if p.distribution == "q_uniform":
        return FloatDistribution(p.min, p.max, step=p.q)
    return FloatDistribution(p.min, p.max)


def make_sampler(spec: StudySpec, invocation: int = 1) -> optuna.samplers.BaseSampler:
    """tpe (default), random, or grid over every combination of `values`.

    Each invocation of a study (an extension) draws from its own stream, so it does not propose
    again the configurations the earlier invocations drew.
    """
    seed = spec.search.seed + invocation - 1
    if spec.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.algorithm == "grid":
        grid = {p.key: [_encode(v) for v in p.values] for p in spec.search_parameters()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup_trials(spec))


def _startup_trials(spec: StudySpec) -> int:
    # TPE models nothing until it has seen some trials; keep a few random ones on small budgets
    return max(2, min(10, spec.search.trials // 3))


def decode(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values back to config values (JSON-encoded choices become lists again)."""
    return {k: _decode(v) for k, v in params.items()}


def encode(value: Any) -> Any:
    """A config value as Optuna stores it (lists become JSON strings)."""
    return _encode(value)


def _encode(value: Any) -> Any:
    if isinstance(value, _PRIMITIVE):
        return value
    return _ENCODED + json.dumps(_plain(value))


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_ENCODED):
        return json.loads(value[len(_ENCODED) :])
    return value


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value
