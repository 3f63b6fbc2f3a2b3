"""The JSON Schema of study files: shipped files pass it, broken ones fail it, the copy is fresh."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import trainers
from ablate import spec as specs
from ablate.errors import SpecError
from ablate.spec.schema import json_schema, render
from trainers.methods.base import knob_help

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "search_spaces").rglob("*.yaml"))
COMMITTED = REPO / "search_spaces/study.schema.json"
QUICKSTART = REPO / "search_spaces/quickstart.yaml"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


def errors(schema: dict[str, Any], study: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(study)]


def test_the_schema_is_a_valid_json_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_search_space_passes_the_schema_and_names_it(path, schema):
    assert errors(schema, yaml.safe_load(path.read_text())) == []
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), f"{path} names no schema"
    assert (path.parent / first.partition("$schema=")[2]).resolve() == COMMITTED


def test_the_committed_copy_is_what_json_schema_prints():
    assert COMMITTED.read_text() == render(), (
        "search_spaces/study.schema.json is stale; regenerate it with "
        "`python -m ablate.spec.schema > search_spaces/study.schema.json` (or `ablate schema`)"
    )


BROKEN = {
    "unknown top-level key": lambda s: s | {"trails": 3},
    "unknown section key": lambda s: s | {"search": {"trails": 3}},
    "wrong type": lambda s: s | {"search": {"trials": "ten"}},
    "below the minimum": lambda s: s | {"scheduler": {"grace_epochs": 0}},
    "bad scheduler": lambda s: s | {"scheduler": {"type": "asha2"}},
    "bad algorithm": lambda s: s | {"search": {"algorithm": "bayes"}},
    "bad dataset preset": lambda s: s | {"base": {"dataset": "mnist"}},
    "bad method": lambda s: s | {"method": "cop"},
    "bad distribution": lambda s: s | {"parameters": {"optim.lr": {"distribution": "normal"}}},
    "unknown parameter key": lambda s: s | {"parameters": {"optim.lr": {"values": [1], "n": 2}}},
    "repeated seeds": lambda s: s | {"seeds": [1, 1]},
    "missing method": lambda s: {k: v for k, v in s.items() if k != "method"},
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_study_fails_the_schema_and_the_validator(name, schema, tmp_path):
    study = BROKEN[name](yaml.safe_load(QUICKSTART.read_text()))
    assert errors(schema, study), f"the schema accepts a study with a {name}"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(SpecError):
        specs.load(path)


def test_every_method_knob_is_offered_with_its_help(schema):
    base = schema["properties"]["base"]["anyOf"][0]["properties"]
    searched = schema["properties"]["parameters"]["anyOf"][0]["properties"]
    assert trainers.list_methods() == schema["properties"]["method"]["enum"]
    for name in trainers.list_methods():
        cfg = trainers.get_method(name).Config
        for f in dataclasses.fields(cfg):
            key = f"method.{f.name}"
            assert f"{name}: {knob_help(cfg, f.name) or '(no help)'}" in base[key]["description"]
            assert searched[key]["$ref"] == "#/$defs/parameter"


def test_config_groups_offer_their_presets(schema):
    base = schema["properties"]["base"]["anyOf"][0]["properties"]
    for group in ("dataset", "backbone", "optim"):
        presets = sorted(p.stem for p in (REPO / "ablate/conf" / group).glob("*.yaml"))
        assert base[group]["enum"] == presets
    assert base["optim.lr"]["default"] == trainers.OptimConfig().lr


def test_the_schema_serialises_as_json(schema):
    assert json.loads(json.dumps(schema)) == schema


def test_ablate_schema_prints_the_schema_editors_read(capsys):
    from ablate.cli import main

    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == json_schema()
    assert printed == COMMITTED.read_text()
