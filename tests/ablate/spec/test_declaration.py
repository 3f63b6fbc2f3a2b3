"""The declaration is what validation reads: defaults, keys and bounds come from `fields.knobs`."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ablate import spec as specs
from ablate.errors import SpecError
from ablate.spec.fields import knob, knobs
from ablate.spec.model import Metric, Resources, Scheduler, Search

SECTIONS = {"metric": Metric, "search": Search, "scheduler": Scheduler, "resources": Resources}
MINIMAL = {"name": "x", "method": "coop", "parameters": {"optim.lr": {"values": [0.1]}}}


def load(tmp_path, study: dict) -> specs.StudySpec:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return specs.load(path)


def test_a_file_that_sets_nothing_gets_the_declared_defaults(tmp_path):
    spec = load(tmp_path, MINIMAL)
    for name, cls in SECTIONS.items():
        assert getattr(spec, name) == cls(), name
    assert spec.seeds == [1] and spec.retries == 0 and spec.ablation is None


@pytest.mark.parametrize("section", SECTIONS)
def test_an_unknown_key_is_refused_naming_the_declared_ones(section, tmp_path):
    with pytest.raises(SpecError) as err:
        load(tmp_path, MINIMAL | {section: {"bogus": 1}})
    declared = ", ".join(k.name for k in knobs(SECTIONS[section]))
    [problem] = err.value.problems
    assert (problem.key, problem.reason) == (
        f"{section}.bogus",
        f"unknown key; expected one of {declared}",
    )


@pytest.mark.parametrize(
    ("section", "key"),
    [(s, k.name) for s, cls in SECTIONS.items() for k in knobs(cls) if k.minimum is not None],
)
def test_every_declared_bound_is_enforced(section, key, tmp_path):
    bound = next(k.minimum for k in knobs(SECTIONS[section]) if k.name == key)
    with pytest.raises(SpecError) as err:
        load(tmp_path, MINIMAL | {section: {key: bound - 1}})
    assert any(
        p.key == f"{section}.{key}" and f">= {bound}" in p.reason for p in err.value.problems
    )


def test_knobs_skip_what_the_file_does_not_set():
    @dataclasses.dataclass
    class Section:
        size: int = knob(3, "how big", minimum=1)
        derived: bool = knob(False, file=False)

    [size] = knobs(Section)
    assert (size.name, size.kind, size.default, size.minimum, size.help) == (
        "size",
        "int",
        3,
        1,
        "how big",
    )
