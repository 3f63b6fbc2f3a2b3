"""The JSON Schema of a study file, generated from the same declaration validation reads.

`json_schema()` walks `fields.knobs` of the study's sections, the scheduler and sampler tables,
the registered methods' knobs (with their help) and the config groups' choices, so an editor with
YAML support completes and checks a study file as it is typed (`# yaml-language-server:
$schema=...` on a file's first line). It is never stricter than `validate.load`: a file the
validator accepts validates here; what needs the composed configs (a dotted key's type, a depth
that exceeds the backbone) is left to the validator. `search_spaces/study.schema.json` is a copy.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ablate.overrides import GROUPS
from ablate.spec import samplers, schedulers
from ablate.spec.fields import Knob, knobs
from ablate.spec.model import (
    DISTRIBUTIONS,
    METRIC_PATTERN,
    NAME_PATTERN,
    PARAMETER_KEYS,
    Ablation,
    Metric,
    Resources,
    Scheduler,
    Search,
    StudySpec,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SECTIONS: dict[str, type] = {
    "metric": Metric,
    "search": Search,
    "scheduler": Scheduler,
    "resources": Resources,
}
CONFIG_SECTIONS = ("dataset", "backbone", "optim", "train")  # TrialConfig's fixed sections
PARAMETER = {"$ref": "#/$defs/parameter"}


def json_schema() -> dict[str, Any]:
    """The schema of a search-space file (JSON Schema draft 2020-12)."""
    config_keys = _config_keys()
    properties = {k.name: _top_level(k, config_keys) for k in knobs(StudySpec)}
    return {
        "$schema": DRAFT,
        "title": "ablate study",
        "description": "A search-space file for `ablate search` (docs/search-spaces.md).",
        "type": "object",
        "properties": properties,
        "required": [k.name for k in knobs(StudySpec) if k.required],
        "additionalProperties": False,
        "$defs": {"parameter": _parameter()},
    }


def _top_level(k: Knob, config_keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if k.name == "metric":  # one objective, or a list of them (a Pareto front)
        one = _section(Metric)
        several = {"type": "array", "items": one, "minItems": 1}
        return {"description": k.help, "anyOf": [one, several, {"type": "null"}]}
    if k.name in SECTIONS:
        return _nullable(_section(SECTIONS[k.name]), k.help)
    special = {
        "name": lambda: {"type": "string", "pattern": NAME_PATTERN.pattern},
        "description": lambda: {"type": ["string", "null"]},
        "method": lambda: {"enum": _methods()},
        "base": lambda: _nullable(_base(config_keys), k.help),
        "parameters": lambda: _nullable(_parameters(config_keys), k.help),
        "seeds": lambda: _seeds(k.default),
        "datasets": lambda: _datasets(),
        "ablation": lambda: _nullable(_ablation(), k.help),
    }
    schema = special[k.name]() if k.name in special else _value(k)
    return {"description": k.help, **schema}


def _datasets() -> dict[str, Any]:
    from ablate import config

    names = {"enum": config.group_options("dataset")}
    return {"type": "array", "items": names, "minItems": 1, "uniqueItems": True}


def _section(cls: type) -> dict[str, Any]:
    """A declared section: its keys with type, bounds, choices, default and help."""
    special = {
        "name": {"type": "string", "pattern": METRIC_PATTERN.pattern},
        "gpu": {"anyOf": [{"type": "number", "minimum": 0}, {"const": "auto"}]},
    }
    properties = {}
    for k in knobs(cls):
        schema = special.get(k.name) or _value(k)
        properties[k.name] = {"description": _help(cls, k), "default": k.default, **schema}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _value(k: Knob) -> dict[str, Any]:
    if k.choices is not None:
        return {"enum": list(k.choices())}
    kind = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}[k.kind]
    return {"type": kind} | ({"minimum": k.minimum} if k.minimum is not None else {})


def _help(cls: type, k: Knob) -> str:
    """A key's help; a table's choices each with their own line."""
    tables = {
        (Scheduler, "type"): {n: e.help for n, e in schedulers.SCHEDULERS.items()},
        (Search, "algorithm"): {n: e.help for n, e in samplers.SAMPLERS.items()},
    }
    entries = tables.get((cls, k.name), {})
    return "\n".join([k.help, *(f"{name}: {text}" for name, text in entries.items())])


def _nullable(schema: dict[str, Any], help: str) -> dict[str, Any]:
    """A section left empty (`metric:`) takes its defaults, as the validator reads it."""
    return {"description": help, "anyOf": [schema, {"type": "null"}]}


def _seeds(default: list[int]) -> dict[str, Any]:
    items = {"type": "integer", "minimum": 0}
    return {"type": "array", "items": items, "minItems": 1, "uniqueItems": True, "default": default}


def _base(config_keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # other dotted keys stay allowed: the validator composes them and names a wrong one
    return {"type": "object", "properties": config_keys, "additionalProperties": True}


def _parameters(config_keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    searched = {key: {**PARAMETER, **_described(schema)} for key, schema in config_keys.items()}
    return {"type": "object", "properties": searched, "additionalProperties": PARAMETER}


def _described(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": schema["description"]} if "description" in schema else {}


def _parameter() -> dict[str, Any]:
    """One searched key: `values`/`value`, or a distribution with `min` and `max`."""
    scalar_or_list = {"not": {"type": "object"}}
    body = {
        "values": {"type": "array", "minItems": 1, "items": scalar_or_list},
        "value": scalar_or_list,
        "distribution": {"enum": list(DISTRIBUTIONS[2:])},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "q": {"type": "number", "exclusiveMinimum": 0},
    }
    assert tuple(body) == PARAMETER_KEYS  # the validator's keys, no more and no fewer
    return {"type": "object", "properties": body, "additionalProperties": False}


def _ablation() -> dict[str, Any]:
    design, base, variants = knobs(Ablation)
    values = {"type": "object", "minProperties": 1}
    properties = {
        "design": {"description": design.help, "default": design.default, **_value(design)},
        "base": {"description": base.help, "type": ["object", "null"]},
        "variants": {
            "description": variants.help,
            "type": "object",
            "additionalProperties": values,
        },
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _methods() -> list[str]:
    from ablate import config  # Hydra and the trainers: only the schema's generation needs them

    return config.group_options("method")


def _config_keys() -> dict[str, dict[str, Any]]:
    """The keys a study sets in `base:` and `parameters:`: the config groups with their choices,
    each section's fields, and every registered method's knobs with their help."""
    from ablate import config
    from trainers.configs import TrialConfig

    found: dict[str, dict[str, Any]] = {}
    for group in GROUPS[1:]:  # `method` is set at the top level of the file
        found[group] = {"description": f"the {group} preset", "enum": config.group_options(group)}
    defaults = TrialConfig()
    for section in CONFIG_SECTIONS:
        for f in dataclasses.fields(getattr(defaults, section)):
            value = getattr(getattr(defaults, section), f.name)
            found[f"{section}.{f.name}"] = {"default": value} if _plain(value) else {}
    found.update(_method_knobs())
    return found


def _method_knobs() -> dict[str, dict[str, Any]]:
    """`method.KEY` for every knob of every method; a key several methods share names each."""
    import trainers
    from trainers.methods.base import knob_help

    helps: dict[str, list[str]] = {}
    for name in trainers.list_methods():
        cfg = trainers.get_method(name).Config
        for f in dataclasses.fields(cfg):
            text = knob_help(cfg, f.name) or "(no help)"
            helps.setdefault(f"method.{f.name}", []).append(f"{name}: {text}")
    return {key: {"description": "\n".join(texts)} for key, texts in helps.items()}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def render() -> str:
    """The schema as `ablate schema` prints it and `search_spaces/study.schema.json` holds it."""
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":  # python -m ablate.spec.schema > search_spaces/study.schema.json
    print(render(), end="")
