"""Schedulers and samplers are tables: one entry adds a choice everywhere it is read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import ray.tune.schedulers
import yaml

from ablate import spec as specs
from ablate.errors import SpecError
from ablate.search import space, tuning
from ablate.search.tuning.trainable import FIDELITY
from ablate.spec import samplers, schedulers
from ablate.spec.schema import json_schema

QUICKSTART = Path(__file__).resolve().parents[3] / "search_spaces/quickstart.yaml"
LATE = schedulers.SchedulerEntry(
    "MedianStoppingRule",
    "a made-up scheduler: the median rule, but late",
    kwargs=lambda s, epochs: {"grace_period": epochs, "min_samples_required": 5},
    plan=lambda s, epochs: f"late median stopping after {epochs} epochs",
)
NSGA = samplers.SamplerEntry(
    "NSGAIISampler", "a made-up entry: a genetic algorithm", kwargs=lambda s: {"seed": s.seed}
)


@pytest.fixture
def extended(monkeypatch):
    monkeypatch.setitem(schedulers.SCHEDULERS, "late", LATE)
    monkeypatch.setitem(samplers.SAMPLERS, "nsga", NSGA)


def study(tmp_path: Path, scheduler: str, algorithm: str) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["scheduler"] = {"type": scheduler}
    raw["search"] = {"algorithm": algorithm, "trials": 4}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_new_entry_is_refused_before_it_is_added(tmp_path):
    with pytest.raises(SpecError) as err:
        specs.load(study(tmp_path, "late", "nsga"))
    reasons = {p.key: p.reason for p in err.value.problems}
    assert reasons["scheduler.type"] == "'late' is not one of asha, median, hyperband, none"
    assert reasons["search.algorithm"] == "'nsga' is not one of tpe, random, grid"


def test_a_new_entry_validates_plans_builds_and_is_in_the_schema(extended, tmp_path):
    spec = specs.load(study(tmp_path, "late", "nsga"))
    plan = specs.describe_plan(spec)
    assert "scheduler  late median stopping after 6 epochs" in plan
    assert "search     nsga," in plan
    built = tuning.make_scheduler(spec.scheduler, 6)
    assert type(built).__name__ == "MedianStoppingRule"
    assert built._min_samples_required == 5  # the entry's kwargs reached the Ray class
    assert type(space.make_sampler(spec)).__name__ == "NSGAIISampler"
    schema = json_schema()["properties"]
    sched = schema["scheduler"]["anyOf"][0]["properties"]["type"]
    assert "late" in sched["enum"] and "late: a made-up scheduler" in sched["description"]
    algorithm = schema["search"]["anyOf"][0]["properties"]["algorithm"]
    assert "nsga" in algorithm["enum"] and "nsga: a made-up entry" in algorithm["description"]


@pytest.mark.parametrize("name", list(schedulers.SCHEDULERS))
def test_every_scheduler_entry_builds_its_ray_class(name):
    entry = schedulers.SCHEDULERS[name]
    s = dataclasses.replace(specs.Scheduler(), type=name, grace_epochs=2, reduction_factor=4.0)
    built = tuning.make_scheduler(s, 9)
    assert isinstance(built, getattr(ray.tune.schedulers, entry.ray_class))
    assert entry.plan(s, 9)
    if entry.fidelity:
        assert built._time_attr == FIDELITY
    ranked = tuning.make_scheduler(s, 9, {"metric": "val/hm", "mode": "max"})
    # Tune itself is told no metric: a scheduler that ranks trials holds the study's
    assert getattr(ranked, "_metric", None) == ("val/hm" if entry.ranks else None)


def test_the_grid_sampler_walks_every_combination(tmp_path):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["parameters"] = {"optim.lr": {"values": [0.1, 0.2]}, "train.epochs": {"values": [1, 2]}}
    raw["search"] = {"algorithm": "grid"}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = specs.load(path)
    assert spec.num_trials == 4
    sampler = space.make_sampler(spec)
    assert type(sampler).__name__ == "GridSampler"
    assert sampler._search_space == {"optim.lr": [0.1, 0.2], "train.epochs": [1, 2]}


@pytest.mark.parametrize(
    ("grace", "factor", "epochs", "brackets"),
    [(1, 2.0, 6, 3), (1, 3.0, 9, 3), (1, 3.0, 27, 4), (2, 2.0, 8, 3), (4, 3.0, 4, 1)],
)
def test_hyperband_runs_s_max_plus_one_asynchronous_brackets(grace, factor, epochs, brackets):
    """HyperBand's floor(log_eta(max / grace)) + 1 brackets, each successive halving that
    never waits for a bracket to fill (the synchronous scheduler paused trials forever behind
    `max_concurrent` and so stopped none)."""
    s = dataclasses.replace(
        specs.Scheduler(), type="hyperband", grace_epochs=grace, reduction_factor=factor
    )
    assert schedulers.hyperband_brackets(s, epochs) == brackets
    built = tuning.make_scheduler(s, epochs)
    assert type(built).__name__ == "AsyncHyperBandScheduler"
    assert len(built._brackets) == brackets
