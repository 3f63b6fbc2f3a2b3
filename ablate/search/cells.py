"""What a trial computes, as keys: its configuration composed per dataset, and the keys under
which its (configuration x dataset x seed) cells are found in the results table, in MLflow and
in its saved state."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trainers
from ablate import config
from ablate.search import space
from ablate.spec import StudySpec

# how a trial runs, not what it computes: changing one must not retrain finished cells
SPEED_KNOBS = ("seed", "train.cache_frozen", "train.fuse_seeds", "train.threads")


def trial_key(cfg: trainers.TrialConfig) -> str:
    """sha256 of the resolved config without the seed and the speed knobs, plus the package
    version and the method's revision: the (configuration, seed) cells a results table already
    holds are found by it, and cells of an older computation of the method are not."""
    from ablate import __version__

    flat = config.to_flat_dict(cfg)
    for knob in SPEED_KNOBS:
        flat.pop(knob, None)
    flat["method.revision"] = trainers.method_for_config(cfg.method).revision
    payload = json.dumps(flat, sort_keys=True, default=str) + __version__
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Arm:
    """One dataset of a trial (the only one outside a suite): its config, the key of its
    (configuration, dataset) cells, its seed runs and the cells an earlier run finished."""

    dataset: str | None  # None: the study's one dataset, and rows carry no dataset column
    cfg: trainers.TrialConfig
    key: str
    seed_runs: dict[int, str] = field(default_factory=dict)
    reused: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def compose(cls, spec: StudySpec, values: dict[str, Any], dataset: str | None) -> Arm:
        return cls(dataset, *composed(tuple(spec.trial_overrides(values, dataset))))

    def fresh_seeds(self, seeds: list[int]) -> list[int]:
        """The seeds this trial trains: those an earlier run did not finish."""
        return [s for s in seeds if s not in self.reused]

    def state(self) -> dict[str, Any]:
        return {"seed_runs": self.seed_runs, "reused": self.reused}


def arms_of(spec: StudySpec, values: dict[str, Any]) -> list[Arm]:
    """A trial's arms: one per dataset of the study's suite."""
    return [Arm.compose(spec, values, dataset) for dataset in spec.suite]


def arm_states(resume: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset: its seed runs, reused cells and seed states (a checkpoint written before
    suites held one dataset's at the top level)."""
    if "arms" in resume:
        return resume["arms"]
    return [{k: resume[k] for k in ("seed_runs", "reused", "seeds")}]


@functools.lru_cache(maxsize=16)
def composed(overrides: tuple[str, ...]) -> tuple[trainers.TrialConfig, str]:
    """A trial's config and cell key: composed once for its state's key and its run."""
    cfg = config.compose(list(overrides))
    return cfg, trial_key(cfg)


def state_key(spec: StudySpec, params: Mapping[str, Any]) -> str:
    """The name of a trial's saved state (`trial_state`): its configuration's cells and its
    seeds. Any trial of that configuration in the study continues from it: Tune's restored
    one, or the trial its restored searcher suggests again when its snapshot predates it."""
    arms = arms_of(spec, space.decode(dict(params)))
    return hashlib.sha256(f"{suite_key(arms)}|{spec.seeds}".encode()).hexdigest()[:16]


def suite_key(arms: list[Arm]) -> str:
    """The trial run's key: its one dataset's cell key, or a suite's keys together."""
    if len(arms) == 1:
        return arms[0].key
    return hashlib.sha256("|".join(a.key for a in arms).encode()).hexdigest()[:16]
