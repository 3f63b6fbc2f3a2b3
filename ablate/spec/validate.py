"""Loading a search-space file: read, parse, check the shape, then the meaning.

Every problem is collected (file, line, key, reason) and reported sorted by line before
`SpecError` is raised; nothing is launched and nothing is logged for a file that does not
validate. A key given twice in one mapping is a problem (YAML would keep the last silently). The
meaning is checked by composing the study's trials with the same `config.compose` a trial uses
(`check_trials`), so validation cannot disagree with what the trials will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate import overrides
from ablate.errors import Problem, SpecError
from ablate.spec import schedulers
from ablate.spec.fields import keys
from ablate.spec.model import (
    DISTRIBUTIONS,
    METRIC_PATTERN,
    METRICS,
    NAME_PATTERN,
    PARAMETER_KEYS,
    TOP_KEYS,
    VARIANT_KEY,
    Ablation,
    Metric,
    Parameter,
    Resources,
    Scheduler,
    Search,
    StudySpec,
    freeze,
)
from ablate.spec.reading import FileChecks, kind, knob_of


def load(path: str | Path, extra_overrides: list[str] | None = None) -> StudySpec:
    """Read and validate a search-space file. Raises SpecError listing every problem."""
    path = Path(path)
    checker = _Checker(str(path))
    text = checker.read(path)
    raw = checker.parse(text)
    spec = checker.build(path, text, raw, list(extra_overrides or [])) if raw is not None else None
    if spec is not None:
        _absolute_roots(spec)
    if spec is not None and not checker.problems:
        checker.check_semantics(spec)
    if checker.problems:
        raise SpecError(by_line(checker.problems))
    assert spec is not None
    return spec


def by_line(problems: list[Problem]) -> list[Problem]:
    """Problems in the order of the file's lines; those without a line last, in found order."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def _absolute_roots(spec: StudySpec) -> None:
    """A relative `dataset.root` means: from where `ablate search` runs. Trials run elsewhere
    (Ray gives each its own working folder), so it is made absolute here."""
    root = spec.base.get("dataset.root")
    if isinstance(root, str) and root and not Path(root).is_absolute():
        spec.base["dataset.root"] = str(Path(root).resolve())
    for index, item in enumerate(spec.extra_overrides):
        key, _, value = item.partition("=")
        bare = value.strip("'\"")
        if key == "dataset.root" and bare not in ("", "null") and not Path(bare).is_absolute():
            spec.extra_overrides[index] = overrides.to_override(key, str(Path(bare).resolve()))


class _Checker(FileChecks):
    """The study's own checks, on top of reading the file and the declared values."""

    def build(
        self, path: Path, text: str, raw: dict[str, Any], extra: list[str]
    ) -> StudySpec | None:
        for key in raw:
            if key not in TOP_KEYS:
                self.add(str(key), f"unknown key; expected one of {', '.join(TOP_KEYS)}")
        name = self.string(raw, "name", required=True)
        if name and not NAME_PATTERN.match(name):
            self.add("name", f"{name!r} must be letters, digits, '.', '_' or '-' (a folder name)")
        method = self.string(raw, "method", required=True)
        from ablate import config  # Hydra and the trainers: only a file being validated needs them

        known = config.group_options("method")
        if method and method not in known:
            self.add("method", f"{method!r} is not a registered method; one of {', '.join(known)}")
        base = self.mapping(raw, "base")
        for key in ("method", "seed"):
            if key in base:
                self.add(f"base.{key}", f"set {key!r} at the top level of the file, not in base")
        for key in base:
            if not isinstance(key, str):
                self.add(f"base.{key}", "keys must be dotted config paths")
        objectives = self.metric(raw)
        spec = StudySpec(
            path=path,
            text=text,
            name=name or "",
            method=method or "",
            description=self.string(raw, "description") or "",
            base=base,
            datasets=self.datasets(raw, base, extra),
            metric=objectives[0],
            more_objectives=tuple(objectives[1:]),
            parameters=self.parameters(raw),
            seeds=self.seeds(raw),
            search=self.search(raw),
            scheduler=self.scheduler(raw),
            resources=self.resources(raw),
            ablation=self.ablation(raw),
            retries=self.value(raw, knob_of(StudySpec, "retries"), "retries"),
            extra_overrides=extra,
        )
        if spec.sampler.exhaustive:
            for p in spec.parameters:
                if not p.is_discrete:
                    self.add(f"parameters.{p.key}", "grid search needs `values` (or `value`)")
        if not raw.get("parameters") and raw.get("ablation") is None:
            self.add("parameters", "nothing to search: give `parameters` or an `ablation` block")
        for item in extra:
            if "=" not in item or item.startswith(("+", "~")):
                self.add(
                    "overrides", f"{item!r}: expected key=value (keys cannot be added/removed)"
                )
        searched = {p.key for p in spec.parameters}
        for item in extra:
            if item.split("=", 1)[0] in searched:
                self.add("overrides", f"{item!r} sets a searched parameter; remove one of the two")
        self.scheduler_ranks(raw, spec)
        return spec

    def datasets(self, raw: dict, base: dict, extra: list[str]) -> list[str]:
        """A suite: distinct dataset presets, and no other place that picks the dataset."""
        if raw.get("datasets") is None:
            return []
        names = raw["datasets"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.add("datasets", f"expected a non-empty list of dataset names, got {kind(names)}")
            return []
        from ablate import config

        known = config.group_options("dataset")
        for name in names:
            if name not in known:
                self.add("datasets", f"{name!r} is not a dataset; one of {', '.join(known)}")
        if len(set(names)) != len(names):
            self.add("datasets", f"repeated datasets in {names}")
        why = "the suite's `datasets` pick each trial's dataset"
        if "dataset" in base:
            self.add("base.dataset", f"{why}; remove base.dataset (or datasets)")
        for key in ("dataset", "dataset.name"):
            if key in self.mapping(raw, "parameters"):
                self.add(f"parameters.{key}", f"{why}; a suite is not searched over")
        for item in extra:
            if item.split("=", 1)[0] in ("dataset", "dataset.name"):
                self.add("overrides", f"{item!r}: {why}; edit the suite instead")
        return [n for n in names if n in known]

    def metric(self, raw: dict) -> list[Metric]:
        """`metric:` as one mapping, or a list of them (several objectives: a Pareto front)."""
        items = raw.get("metric")
        if not isinstance(items, list):
            return [Metric(**self.section(raw, "metric", Metric, {"name": self.metric_name}))]
        if not items:
            self.add("metric", "expected a mapping {name, goal} or a non-empty list of them")
            return [Metric()]
        found: list[Metric] = []
        for i, item in enumerate(items):
            where = f"metric[{i}]"
            if not isinstance(item, dict):
                self.add(where, f"expected a mapping such as {{name: val/hm}}, got {kind(item)}")
                continue
            body = {where: item}
            metric = Metric(**self.section(body, where, Metric, {"name": self.metric_name}))
            earlier = [j for j, m in enumerate(found) if m.name == metric.name]
            if earlier and item.get("name") == metric.name:  # a valid name, given twice
                self.add(f"{where}.name", f"{metric.name!r} is already metric[{earlier[0]}]")
            found.append(metric)
        return found or [Metric()]

    def scheduler_ranks(self, raw: dict, spec: StudySpec) -> None:
        """A scheduler that compares trials on one metric cannot serve several objectives."""
        count = len(spec.objectives)
        entry = schedulers.SCHEDULERS.get(spec.scheduler.type)
        if count < 2 or entry is None or not entry.ranks:
            return
        fits = " or ".join(f"scheduler: {{type: {n}}}" for n in schedulers.unranked())
        given = isinstance(raw.get("scheduler"), dict) and "type" in raw["scheduler"]
        if given:
            self.add(
                "scheduler.type",
                f"{spec.scheduler.type} ranks trials on one metric; a study with {count} "
                f"objectives needs {fits}",
            )
        else:
            self.add(
                "metric",
                f"{count} objectives need {fits}; the default scheduler, "
                f"{spec.scheduler.type}, ranks trials on one metric",
            )

    def metric_name(self, raw: dict, where: str) -> str:
        default = knob_of(Metric, "name").default
        name = raw.get("name", default)
        if not isinstance(name, str) or not METRIC_PATTERN.match(name):
            self.add(
                where,
                f"{name!r} is not one of {', '.join(METRICS)} (or, for other "
                "protocols and datasets, their metrics: see docs/datasets.md)",
            )
            return default
        return name

    def seeds(self, raw: dict) -> list[int]:
        default = knob_of(StudySpec, "seeds").default
        seeds = raw.get("seeds", default)
        ok = (
            isinstance(seeds, list)
            and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        )
        if not ok:
            self.add("seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
            return default
        if len(set(seeds)) != len(seeds):
            self.add("seeds", f"repeated seeds in {seeds}")
        return seeds

    def search(self, raw: dict) -> Search:
        return Search(**self.section(raw, "search", Search))

    def scheduler(self, raw: dict) -> Scheduler:
        sched = Scheduler(**self.section(raw, "scheduler", Scheduler))
        if sched.max_epochs and sched.grace_epochs > sched.max_epochs:
            self.add("scheduler.grace_epochs", "must be <= scheduler.max_epochs")
        return sched

    def resources(self, raw: dict) -> Resources:
        found = self.section(raw, "resources", Resources, {"gpu": self.gpu})
        cpu, gpu = found["cpu"], found["gpu"]
        if gpu == "auto":  # measured per configuration before its trial starts
            return Resources(cpu, gpu=1.0, gpu_auto=True)
        if gpu is None:  # not a number: reported by `gpu`
            return Resources(cpu)
        if cpu == 0 and gpu == 0:
            self.add("resources", "a trial needs some cpu or gpu")
        return Resources(cpu, gpu)

    def gpu(self, raw: dict, where: str) -> float | str | None:
        """A number, or `auto`; None for a string that is neither (reported here)."""
        value = raw.get("gpu")
        if value == "auto":
            return value
        if isinstance(value, str):
            self.add(where, f"expected a number >= 0 or auto, got {value!r}")
            return None
        return self.value(raw, knob_of(Resources, "gpu"), where)

    def parameters(self, raw: dict) -> list[Parameter]:
        params = []
        for key, body in self.mapping(raw, "parameters").items():
            where = f"parameters.{key}"
            if not isinstance(key, str) or not key:
                self.add(where, "parameter names must be dotted config paths")
                continue
            if key == VARIANT_KEY or key in ("method", "seed"):
                self.add(
                    where, f"{key!r} cannot be searched here (use seeds / one method per file)"
                )
                continue
            if not isinstance(body, dict):
                self.add(where, f"expected a mapping such as {{values: [...]}}, got {kind(body)}")
                continue
            param = self.parameter(key, body, where)
            if param is not None:
                params.append(param)
        return params

    def parameter(self, key: str, body: dict, where: str) -> Parameter | None:
        self.unknown(body, PARAMETER_KEYS, where)
        if "values" in body or "value" in body:
            if "values" in body and "value" in body:
                self.add(where, "give either `values` or `value`, not both")
            values = body["values"] if "values" in body else [body["value"]]
            if not isinstance(values, list) or not values:
                self.add(f"{where}.values", f"expected a non-empty list, got {kind(values)}")
                return None
            if "distribution" in body or "min" in body or "max" in body:
                self.add(where, "`values` takes no distribution, min or max")
            if any(isinstance(v, dict) for v in values):
                self.add(f"{where}.values", "values must be scalars or lists")
                return None
            return Parameter(key, "values", values=tuple(freeze(v) for v in values))
        dist = body.get("distribution")
        if dist not in DISTRIBUTIONS[2:]:
            self.add(
                f"{where}.distribution",
                f"{dist!r} is not one of {', '.join(DISTRIBUTIONS[2:])} (or give `values`)",
            )
            return None
        bounds = []
        for end in ("min", "max"):
            value = body.get(end)
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.add(f"{where}.{end}", f"expected a number, got {value!r}")
            elif dist == "int_uniform" and not isinstance(value, int):
                self.add(f"{where}.{end}", f"int_uniform needs integer bounds, got {value!r}")
            bounds.append(value)
        if len(self.problems) and any(p.key.startswith(where) for p in self.problems):
            return None
        low, high = bounds
        if low >= high:
            self.add(where, f"min ({low}) must be < max ({high})")
        if dist == "log_uniform_values" and low <= 0:
            self.add(f"{where}.min", f"log scale needs min > 0, got {low}")
        q = body.get("q")
        if dist == "q_uniform":
            if isinstance(q, bool) or not isinstance(q, int | float) or q <= 0:
                self.add(f"{where}.q", f"q_uniform needs a step q > 0, got {q!r}")
        elif q is not None:
            self.add(f"{where}.q", f"q is only for q_uniform, not {dist}")
        return Parameter(key, dist, min=low, max=high, q=q)

    def ablation(self, raw: dict) -> Ablation | None:
        if raw.get("ablation") is None:
            return None
        a = self.mapping(raw, "ablation")
        self.unknown(a, keys(Ablation), "ablation")
        design = self.value(a, knob_of(Ablation, "design"), "ablation.design")
        base = self.mapping(a, "base", "ablation.base")
        variants = self.mapping(a, "variants", "ablation.variants")
        if not variants:
            self.add("ablation.variants", "expected at least one variant")
        clean: dict[str, dict[str, Any]] = {}
        for name, values in variants.items():
            if not isinstance(values, dict) or not values:
                self.add(f"ablation.variants.{name}", "expected a mapping of dotted keys to values")
            elif str(name) == "base":
                self.add("ablation.variants.base", "'base' is the name of the base configuration")
            else:
                clean[str(name)] = {str(k): freeze(v) for k, v in values.items()}
        return Ablation(design, {str(k): freeze(v) for k, v in base.items()}, clean)

    # -- meaning: compose the trials with the same function the trials use
    def check_semantics(self, spec: StudySpec) -> None:
        from ablate.spec import check_trials  # composes with Hydra and the trainers

        first = None
        for dataset in spec.suite:  # a suite's every dataset, before anything launches
            problems, cfg = check_trials.check(spec, dataset)
            first = first or cfg
            for key, reason in problems:
                self.add(key, reason)
        if first is None:
            return
        epochs = first.train.epochs
        if spec.scheduler.max_epochs and spec.scheduler.max_epochs != epochs:
            self.add(
                "scheduler.max_epochs",
                f"{spec.scheduler.max_epochs} differs from train.epochs={epochs}; set one of them",
            )
        if spec.scheduler.grace_epochs > epochs:
            self.add("scheduler.grace_epochs", f"must be <= train.epochs ({epochs})")
