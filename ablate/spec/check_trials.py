"""The meaning of a search-space file: compose the trials the study will run and check each.

Every trial is the base plus one value of every searched parameter, so a base value that every
parameter replaces is never used and is not checked on its own. Validation composes probe
trials with the same `config.compose` a trial uses: every combination of the parameters' probe
values (each choice, both ends of a range) when there are at most `MAX_COMBINATIONS`, otherwise
each probe value once with the other parameters at their first value. It then runs what
composition cannot know (dataset files, the backbone, the method against the backbone).

A problem is reported against what causes it: the searched values whose change (to another
probe value) or removal (back to the base) makes it go away, otherwise `base`: a value that
every trial keeps, or one no searched value can make valid. Hydra composition costs ~0.1 s,
so the product is enumerated only when small.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate import config
from ablate.errors import ConfigError
from ablate.spec.model import COSTS, VARIANT_KEY, StudySpec, thaw

if TYPE_CHECKING:
    from trainers.configs import TrialConfig

MAX_COMBINATIONS = 12  # probe trials composed one by one (~0.1 s each) before every study
MAX_ALTERNATIVES = 2  # other values of a parameter tried when a problem is looking for its cause

Combo = tuple[tuple[str, Any], ...]  # (searched key, value), in the order of the parameters


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one probe trial."""

    reason: str
    key: str | None = None  # where it belongs when no searched value causes it
    compose: bool = False  # composition failed: the trial has no config


def check(
    spec: StudySpec, dataset: str | None = None
) -> tuple[list[tuple[str, str]], TrialConfig | None]:
    """(key, reason) of every problem of the study's trials (on `dataset` of a suite), and the
    first trial's config that composes (None if none does)."""
    trials = _ProbeTrials(spec, dataset)
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    composing: set[str] = set()  # keys with a composition problem: one report each is enough
    for combo in trials.combos:
        for finding in trials.findings(combo):
            if finding.reason in seen:
                continue
            seen.add(finding.reason)
            key, reason = trials.attribute(combo, finding)
            if finding.compose and key in composing:
                continue
            composing |= {key} if finding.compose else set()
            problems.append((key, reason))
    configs = (trials.config(combo) for combo in trials.combos)
    return problems, next((cfg for cfg in configs if cfg is not None), None)


class _ProbeTrials:
    """The probe trials of one study, each composed and checked at most once."""

    def __init__(self, spec: StudySpec, dataset: str | None = None) -> None:
        self.spec, self.dataset = spec, dataset
        self.params = {p.key: p for p in spec.search_parameters()}
        self.combos = self._probe_combos()
        self._results: dict[tuple[Combo, bool], tuple[TrialConfig | None, list[Finding]]] = {}
        self._datasets: dict[str, list[str]] = {}  # reading a dataset's splits costs time
        self._backbones: dict[str, Any] = {}  # its dims, or the BackboneError

    def _probe_combos(self) -> list[Combo]:
        probes = [[(p.key, v) for v in p.probe_values()] for p in self.params.values()]
        if math.prod(len(values) for values in probes) <= MAX_COMBINATIONS:
            return [tuple(c) for c in itertools.product(*probes)]
        first = tuple(values[0] for values in probes)
        combos = [first]
        for i, values in enumerate(probes):
            combos += [first[:i] + (item,) + first[i + 1 :] for item in values[1:]]
        return combos

    def config(self, combo: Combo) -> TrialConfig | None:
        return self._result(combo)[0]

    def findings(self, combo: Combo, extras: bool = True) -> list[Finding]:
        return self._result(combo, extras)[1]

    def attribute(self, combo: Combo, finding: Finding) -> tuple[str, str]:
        """(key, reason): the searched values that cause `finding`, else what all trials keep."""
        causes = [i for i in range(len(combo)) if self._clears(combo, i, finding)]
        if not causes:
            return self._kept_key(combo, finding), finding.reason
        key, value = combo[causes[0]]
        where = "ablation" if key == VARIANT_KEY else f"parameters.{key}"
        others = "".join(f" with {combo[i][0]}={thaw(combo[i][1])!r}" for i in causes[1:])
        return where, f"value {thaw(value)!r}{others}: {finding.reason}"

    def _clears(self, combo: Combo, index: int, finding: Finding) -> bool:
        """Whether another probe value of parameter `index`, or none (the base), makes `finding`
        go away without a problem of its own: with a base depth every trial keeps, a backbone
        of 4 layers instead of 2 only changes the message. A composition problem hides the
        rest of a trial's problems, so for it going away is enough."""
        key, value = combo[index]
        others = [v for v in self.params[key].probe_values() if v != value][:MAX_ALTERNATIVES]
        changed = [combo[:index] + ((key, v),) + combo[index + 1 :] for v in others]
        removed = combo[:index] + combo[index + 1 :]
        mine = self.findings(combo)
        for other in [*changed, removed]:
            theirs = self.findings(other)
            if finding not in theirs and (finding.compose or all(f in mine for f in theirs)):
                return True
        return False

    def _kept_key(self, combo: Combo, finding: Finding) -> str:
        if finding.key:
            return finding.key
        if self.spec.extra_overrides and finding not in self.findings(combo, extras=False):
            return "overrides"  # the command line's overrides, not the file's base
        return "base"

    def _result(
        self, combo: Combo, extras: bool = True
    ) -> tuple[TrialConfig | None, list[Finding]]:
        if (combo, extras) not in self._results:
            spec = self.spec if extras else dataclasses.replace(self.spec, extra_overrides=[])
            try:
                cfg = config.compose(spec.trial_overrides(dict(combo), self.dataset))
            except ConfigError as err:
                reason = self._on_dataset(str(err))
                self._results[combo, extras] = None, [Finding(reason, compose=True)]
            else:
                self._results[combo, extras] = cfg, self._runtime_findings(cfg)
        return self._results[combo, extras]

    def _runtime_findings(self, cfg: TrialConfig) -> list[Finding]:
        """What composition cannot know: dataset files, metric names, the backbone, the method
        against the backbone."""
        from trainers import protocols
        from trainers.backbone import BackboneError

        where = "datasets" if self.dataset else None  # a suite's dataset, not the base
        findings = [Finding(self._on_dataset(r), where) for r in self._dataset_reasons(cfg)]
        allowed = [*protocols.metric_names(cfg.dataset), "train/loss", *COSTS]
        objectives = self.spec.objectives
        for i, metric in enumerate(objectives):
            if metric.name not in allowed:
                reason = (
                    f"{metric.name!r} is not one of {', '.join(allowed)} (the metrics of "
                    f"dataset {cfg.dataset.name}, protocol {cfg.dataset.protocol})"
                )
                key = f"metric[{i}].name" if len(objectives) > 1 else "metric.name"
                findings.append(Finding(reason, key=key))
        dims = self._backbone_dims(cfg)
        if isinstance(dims, BackboneError):
            return [*findings, Finding(str(dims))]
        return findings + [Finding(self._on_dataset(r)) for r in cfg.method.check(dims)]

    def _on_dataset(self, reason: str) -> str:
        """A suite's problem says on which of its datasets it arises."""
        return f"on dataset {self.dataset}: {reason}" if self.dataset else reason

    def _dataset_reasons(self, cfg: TrialConfig) -> list[str]:
        from trainers import protocols
        from trainers.data import check as check_dataset

        key = repr(cfg.dataset)
        if key not in self._datasets:
            reasons = check_dataset(cfg.dataset) + protocols.check(cfg.dataset)
            self._datasets[key] = reasons or protocols.check_targets(cfg.dataset)
        return self._datasets[key]

    def _backbone_dims(self, cfg: TrialConfig) -> Any:
        from trainers.backbone import BackboneError
        from trainers.backbone import check as check_backbone

        key = repr(cfg.backbone)
        if key not in self._backbones:
            try:
                self._backbones[key] = check_backbone(cfg.backbone)
            except BackboneError as err:
                self._backbones[key] = err
        return self._backbones[key]
