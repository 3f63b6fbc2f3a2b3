"""The study model: a search-space file as dataclasses, its trials' overrides, and the plan.

A file that does not validate raises `SpecError` listing every problem as `file:line: key: reason`,
in line order; nothing is launched and nothing is logged. Validation composes the study's trials
(the base with every parameter's probe values) with the same `config.compose` a trial uses, so it
cannot disagree with what the trials will do. The format is documented in docs/search-spaces.md.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.overrides import GROUPS, to_override
from ablate.spec import samplers, schedulers
from ablate.spec.fields import knob, knobs

DISTRIBUTIONS = ("values", "value", "uniform", "int_uniform", "log_uniform_values", "q_uniform")
PARAMETER_KEYS = ("values", "value", "distribution", "min", "max", "q")  # a parameter's body
GOALS = ("maximize", "minimize")
DESIGNS = ("ofat", "factorial")
COSTS = ("cost/params", "cost/peak_mem_mb", "cost/epoch_s")  # every trial records them
METRICS = tuple(f"{s}/{m}" for s in ("val", "test") for m in ("base", "new", "hm")) + (
    "train/loss",
    *COSTS,
)
VARIANT_KEY = "variant"  # the pseudo-parameter that picks an ablation variant
# a metric name; which ones a study may use depends on its dataset and protocol (validate.py)
METRIC_PATTERN = re.compile(r"^(train|val|test|diag|cost)/[A-Za-z0-9_./-]+$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Parameter:
    """One searched dotted key and its distribution (W&B sweep spelling)."""

    key: str
    distribution: str
    values: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    q: float | None = None

    @property
    def is_discrete(self) -> bool:
        return self.distribution in ("values", "value")

    def probe_values(self) -> list[Any]:
        """The values validation composes: every choice, or both ends of a range."""
        return list(self.values) if self.is_discrete else [self.min, self.max]


# The study format, declared once: each section's keys, types, defaults, bounds and choices.
# Validation (validate.py) and the JSON Schema (schema.py) read these through `fields.knobs`.


@dataclass(frozen=True)
class Metric:
    name: str = knob("val/hm", "the metric to optimise, e.g. val/hm (see docs/datasets.md)")
    goal: str = knob("maximize", "maximize or minimize the metric", choices=lambda: GOALS)

    @property
    def mode(self) -> str:
        return "max" if self.goal == "maximize" else "min"


@dataclass(frozen=True)
class Search:
    algorithm: str = knob("tpe", "the sampler that proposes configurations", choices=samplers.names)
    trials: int = knob(10, "how many configurations to try (grid: all of them)", minimum=1)
    max_concurrent: int = knob(2, "how many configurations run at once", minimum=1)
    seed: int = knob(0, "the sampler's seed, so a study's sampling is reproducible", minimum=0)


@dataclass(frozen=True)
class Scheduler:
    type: str = knob("asha", "the early-stopping scheduler", choices=schedulers.names)
    # 0 = the composed train.epochs; a file that sets it gives at least 1
    max_epochs: int = knob(0, "the most epochs a trial trains (default: train.epochs)", minimum=1)
    grace_epochs: int = knob(1, "epochs every trial trains before it may be stopped", minimum=1)
    reduction_factor: float = knob(
        3.0, "keep 1/reduction_factor of the trials at each rung", minimum=1.01
    )


@dataclass(frozen=True)
class Resources:
    cpu: float = knob(1.0, "CPUs per trial", minimum=0.0)
    # with gpu_auto: 1, the most a trial may ask for before it is measured
    gpu: float = knob(0.0, "GPUs per trial (a fraction shares one), or auto", minimum=0.0)
    gpu_auto: bool = knob(False, file=False)  # `gpu: auto`: a probe measures each config's share


@dataclass(frozen=True)
class Ablation:
    design: str = knob(
        "ofat", "ofat: one factor at a time; factorial: every combination", choices=lambda: DESIGNS
    )
    base: dict[str, Any] = knob(help="the ablated keys' base values", factory=dict)
    variants: dict[str, dict[str, Any]] = knob(
        help="variant name -> the keys it changes from the base", factory=dict
    )

    def configurations(self) -> dict[str, dict[str, Any]]:
        """Variant name -> the full set of ablated values (base first)."""
        if self.design == "ofat":
            configs = {"base": dict(self.base)}
            configs |= {name: self.base | values for name, values in self.variants.items()}
            return configs
        levels: dict[str, list[Any]] = {key: [value] for key, value in self.base.items()}
        for values in self.variants.values():
            for key, value in values.items():
                levels.setdefault(key, [])
                if value not in levels[key]:
                    levels[key].append(value)
        keys = list(levels)
        configs = {}
        for combo in itertools.product(*(levels[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            name = (
                "base"
                if chosen == self.base
                else ",".join(f"{k}={v}" for k, v in chosen.items() if self.base.get(k) != v)
            )
            configs[name] = chosen
        return configs


@dataclass(kw_only=True)
class StudySpec:
    """A validated search-space file plus the command line's extra overrides."""

    name: str = knob(help="the study's name (a folder name: letters, digits, '.', '_', '-')")
    description: str = knob("", "one line on what the study asks")
    method: str = knob(help="the registered method every trial trains")
    base: dict[str, Any] = knob(help="dotted config keys every trial sets", factory=dict)
    datasets: list[str] = knob(
        help="a suite: every trial trains on each dataset and seed, decided on the suite mean",
        factory=list,
    )
    metric: Metric = knob(
        help="what the search optimises: one metric, or a list of them (a Pareto front)",
        factory=Metric,
    )
    parameters: list[Parameter] = knob(help="dotted config keys to search", factory=list)
    seeds: list[int] = knob(help="each configuration runs once per seed", factory=lambda: [1])
    search: Search = knob(help="how configurations are proposed", factory=Search)
    scheduler: Scheduler = knob(help="when weak trials stop early", factory=Scheduler)
    resources: Resources = knob(help="what one trial asks Ray for", factory=Resources)
    ablation: Ablation | None = knob(None, "named variants searched as one categorical parameter")
    retries: int = knob(
        0, "how often a trial that fails by itself is retried (a lost node costs none)", minimum=0
    )
    more_objectives: tuple[Metric, ...] = knob(file=False, factory=tuple)  # metric: [a, b, ...]
    path: Path = knob(file=False)
    text: str = knob(file=False)
    extra_overrides: list[str] = knob(file=False, factory=list)

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """Every metric the search optimises, `metric` (the first of a list) first."""
        return (self.metric, *self.more_objectives)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def suite(self) -> list[str | None]:
        """The datasets every trial trains on; [None] when the base (or Hydra) picks one."""
        return list(self.datasets) or [None]

    def base_overrides(self, dataset: str | None = None) -> list[str]:
        """Group choices (the suite's `dataset` among them), then the file's base values, then
        the command line's overrides."""
        groups = [to_override("method", self.method)]
        groups += [to_override("dataset", dataset)] if dataset else []
        groups += [to_override(k, v) for k, v in self.base.items() if k in GROUPS]
        values = [to_override(k, v) for k, v in self.base.items() if k not in GROUPS]
        return groups + values + list(self.extra_overrides)

    def trial_overrides(self, params: dict[str, Any], dataset: str | None = None) -> list[str]:
        """The overrides of one sampled configuration (ablation variant expanded) on `dataset`
        of the suite (by default its first: what a configuration's shape depends on)."""
        values = dict(params)
        variant = values.pop(VARIANT_KEY, None)
        if self.ablation is not None and variant is not None:
            values = self.ablation.configurations()[variant] | values
        dataset = dataset or self.suite[0]
        return self.base_overrides(dataset) + [to_override(k, v) for k, v in sorted(values.items())]

    def search_parameters(self) -> list[Parameter]:
        """The parameters the searcher samples, with the ablation variant as a categorical one."""
        params = list(self.parameters)
        if self.ablation is not None:
            names = tuple(self.ablation.configurations())
            params.insert(0, Parameter(VARIANT_KEY, "values", values=names))
        return params

    def grid_size(self) -> int:
        size = 1
        for p in self.search_parameters():
            size *= len(p.values)
        return size

    @property
    def num_trials(self) -> int:
        return self.grid_size() if self.sampler.exhaustive else self.search.trials

    @property
    def sampler(self) -> samplers.SamplerEntry:
        return samplers.SAMPLERS[self.search.algorithm]

    def max_epochs(self) -> int:
        if self.scheduler.max_epochs:
            return self.scheduler.max_epochs
        # a trial's config, not the base alone: a base value that every parameter replaces
        # need not compose on its own
        from ablate import config  # Hydra and the trainers: only where a trial is composed

        return config.compose(self.trial_overrides(_first_values(self))).train.epochs


def describe_plan(spec: StudySpec) -> str:
    """The plan `--dry-run` prints: runs, search, scheduler, resources, the first config."""
    from ablate import config

    cfg = config.compose(spec.trial_overrides(_first_values(spec)))
    epochs = cfg.train.epochs
    sched = schedulers.SCHEDULERS[spec.scheduler.type].plan(spec.scheduler, epochs)
    lines = [
        f"study      {spec.name}  ({spec.path}, sha256 {spec.sha256[:12]})",
        f"method     {spec.method}",
        _runs_line(spec),
        f"search     {spec.search.algorithm}, at most {spec.search.max_concurrent} at once, "
        f"optimising {objectives_text(spec)} on the "
        + ("suite mean of the seed means" if spec.datasets else "seed mean")
        + (" (a Pareto front)" if spec.more_objectives else ""),
        f"scheduler  {sched}",
        f"resources  {spec.resources.cpu:g} CPU, {_gpu_text(spec.resources)} per trial",
        "parameters",
    ]
    for p in spec.search_parameters():
        dist = f"{list(p.values)}" if p.is_discrete else f"{p.distribution}[{p.min}, {p.max}]"
        lines.append(f"  {p.key:<28} {dist}")
    lines.append("first trial's config")
    lines += ["  " + line for line in config.to_yaml(cfg).splitlines()]
    return "\n".join(lines)


def _runs_line(spec: StudySpec) -> str:
    suite = f" x {len(spec.datasets)} datasets {spec.datasets}" if spec.datasets else ""
    runs = spec.num_trials * len(spec.suite) * len(spec.seeds)
    return (
        f"trials     {spec.num_trials} configurations{suite} x {len(spec.seeds)} seeds "
        f"{spec.seeds} = {runs} runs"
    )


def objectives_text(spec: StudySpec) -> str:
    """`val/hm (maximize), cost/params (minimize)`: the plan's and the parent run's spelling."""
    return ", ".join(f"{o.name} ({o.goal})" for o in spec.objectives)


def _first_values(spec: StudySpec) -> dict[str, Any]:
    return {p.key: p.probe_values()[0] for p in spec.search_parameters()}


def freeze(value: Any) -> Any:
    """Lists as tuples, so parameter values are hashable."""
    return tuple(freeze(v) for v in value) if isinstance(value, list) else value


def thaw(value: Any) -> Any:
    return [thaw(v) for v in value] if isinstance(value, tuple) else value


def _gpu_text(resources: Resources) -> str:
    if resources.gpu_auto:
        return "a GPU share measured per configuration (gpu: auto)"
    return f"{resources.gpu:g} GPU"


TOP_KEYS = tuple(k.name for k in knobs(StudySpec))  # the file's top-level keys
