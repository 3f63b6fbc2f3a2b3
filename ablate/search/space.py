"""Optuna lives here and only here: spec parameters -> distributions, algorithm -> sampler.

Ray's `OptunaSearch` wraps the result, so every sampler of the `spec.samplers` table is one code
path. Categorical choices Optuna cannot store (lists, e.g. an MPL carry schedule) are
encoded as JSON strings and decoded with `decode` before a trial composes its config.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ablate.spec.samplers import SamplerInputs

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
    """The Optuna sampler of the study's `search.algorithm`, from its entry in `spec.samplers`.

    Each invocation of a study (an extension) draws from its own stream, so it does not propose
    again the configurations the earlier invocations drew.
    """
    grid = {p.key: [_encode(v) for v in p.values] for p in spec.search_parameters()}
    inputs = SamplerInputs(spec.search.seed + invocation - 1, spec.search.trials, grid)
    entry = spec.sampler
    return getattr(optuna.samplers, entry.optuna_class)(**entry.kwargs(inputs))


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


# ---- `ablate report`: an Optuna study rebuilt from the results table ---------------------------
IMPORTANCE_EVALUATORS = ("fanova", "mdi", "ped-anova")
_STATES = {
    "completed": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "failed": optuna.trial.TrialState.FAIL,
}


@dataclass
class Record:
    """One trial as the results table knows it: config values (encoded), outcome, curve."""

    params: dict[str, Any]
    state: str  # completed | pruned | failed
    value: float | None
    intermediate: dict[int, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def fit_distributions(
    declared: dict[str, BaseDistribution], observed: dict[str, list[Any]]
) -> dict[str, BaseDistribution]:
    """The spec's distribution of each parameter where it holds every observed value, else one
    inferred from the values (a missing spec, or a spec changed since the trials ran)."""
    out = {}
    for key, values in observed.items():
        dist = declared.get(key)
        out[key] = dist if dist is not None and all(_holds(dist, v) for v in values) else None
        out[key] = out[key] or infer_distribution(values)
    return out


def _holds(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def infer_distribution(values: list[Any]) -> BaseDistribution:
    """Many distinct numbers: a range (log when it spans two decades); otherwise the choices."""
    distinct = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    if not numeric or len(distinct) <= 6:
        return CategoricalDistribution(distinct or [None])
    lo, hi = min(distinct), max(distinct)
    if all(isinstance(v, int) for v in distinct):
        return IntDistribution(int(lo), int(hi))
    return FloatDistribution(float(lo), float(hi), log=lo > 0 and hi / lo >= 100)


def build_study(
    records: list[Record],
    distributions: dict[str, BaseDistribution],
    direction: str,
    storage: str | None = None,
    name: str | None = None,
) -> optuna.Study:
    """A study holding `records` as finished trials (in memory, or replacing `name` in an RDB
    storage such as sqlite:///results/<study>/optuna.db for optuna-dashboard)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is not None and name is not None:
        with contextlib.suppress(KeyError):  # rebuilt from the table: replace, never append
            optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    study.add_trials([_frozen(r, distributions) for r in records])
    return study


def _frozen(record: Record, distributions: dict[str, BaseDistribution]) -> Any:
    state = _STATES.get(record.state, _STATES["failed"])
    if state == _STATES["completed"] and record.value is None:
        state = _STATES["failed"]  # completed without the metric: nothing Optuna can rank
    return optuna.trial.create_trial(
        state=state,
        value=record.value if state == _STATES["completed"] else None,
        params={k: v for k, v in record.params.items() if k in distributions},
        distributions={k: d for k, d in distributions.items() if k in record.params},
        intermediate_values=record.intermediate,
        user_attrs=record.attrs,
    )


STUDY_NAME = "ablate"  # the searcher's Optuna study, in its own in-memory storage


def new_storage() -> optuna.storages.BaseStorage:
    return optuna.storages.InMemoryStorage()


def add_finished(
    storage: optuna.storages.BaseStorage,
    distributions: dict[str, BaseDistribution],
    configs: list[dict[str, Any]],
    rewards: list[list[float]],
) -> None:
    """Earlier invocations' finished configurations as completed trials of the searcher's study,
    with a value per objective (Ray's own warm start takes one value per trial only)."""
    study = optuna.load_study(
        study_name=STUDY_NAME, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    for params, values in zip(configs, rewards):
        trial = optuna.trial.create_trial(
            state=_STATES["completed"],
            values=list(values),
            params=params,
            distributions={k: d for k, d in distributions.items() if k in params},
        )
        study.add_trial(trial)


def newest_trial_number(storage: optuna.storages.BaseStorage) -> int:
    """The number of the trial the searcher asked for last (Optuna numbers them 0, 1, 2, ...)."""
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    return storage.get_n_trials(study_id) - 1


def param_importances(study: optuna.Study, evaluator: str = "fanova") -> dict[str, float]:
    """Optuna's importance of each parameter on the completed trials (normalised to sum 1)."""
    evaluators = {
        "fanova": optuna.importance.FanovaImportanceEvaluator,
        "mdi": optuna.importance.MeanDecreaseImpurityImportanceEvaluator,
        "ped-anova": optuna.importance.PedAnovaImportanceEvaluator,
    }
    kwargs = {"seed": 0} if evaluator in ("fanova", "mdi") else {}
    return dict(
        optuna.importance.get_param_importances(study, evaluator=evaluators[evaluator](**kwargs))
    )
