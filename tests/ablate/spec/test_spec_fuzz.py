"""No input makes the loader crash: every malformed file is a SpecError, never a traceback; and a
file the loader accepts, the JSON Schema accepts too (the schema is never the stricter)."""

from __future__ import annotations

import functools

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate import spec as specs
from ablate.errors import SpecError
from ablate.spec.schema import json_schema

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.floats(), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from([*specs.TOP_KEYS, "bogus"])
param_keys = st.sampled_from(["optim.lr", "method.prompt_length", "train.epochs", "x.y", ""])
distribution = st.fixed_dictionaries(
    {},
    optional={
        "distribution": st.sampled_from([*specs.DISTRIBUTIONS, "normal"]),
        "min": scalars,
        "max": scalars,
        "q": scalars,
        "values": st.lists(scalars, max_size=3),
        "value": scalars,
    },
)
studies = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzz", "", "a/b"]), "method": st.sampled_from(["coop", "nope"])},
    optional={
        "parameters": st.dictionaries(param_keys, st.one_of(distribution, values), max_size=3),
        "base": st.dictionaries(param_keys, scalars, max_size=2),
        "seeds": values,
        "search": values,
        "scheduler": values,
        "resources": values,
        "ablation": values,
        "metric": values,
    },
)


def load_text(tmp_path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        specs.load(path)
    except SpecError as err:
        problems = err.problems
    else:
        schema().validate(yaml.safe_load(text))
        return
    assert problems
    assert all(p.reason for p in problems)
    order = [(p.line is None, p.line or 0) for p in problems]
    assert order == sorted(order), "problems are listed by line, those without one last"


@functools.cache
def schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(study=studies)
def test_structured_nonsense_is_a_spec_error(tmp_path, study):
    load_text(tmp_path, yaml.safe_dump(study))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.dictionaries(keys, values, max_size=6))
def test_any_top_level_mapping_is_a_spec_error(tmp_path, raw):
    load_text(tmp_path, yaml.safe_dump(raw))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_any_text_is_a_spec_error(tmp_path, text):
    load_text(tmp_path, text)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(study=studies, key=keys)
def test_a_repeated_key_is_always_refused(tmp_path, study, key):
    path = tmp_path / "fuzz.yaml"
    path.write_text(f"{key}: 1\n{yaml.safe_dump(study)}{key}: 2\n")
    try:
        specs.load(path)
    except SpecError as err:
        problems = err.problems
    else:
        raise AssertionError("a file with a repeated key validated")
    assert any(p.key == key and "duplicate key (lines 1 and" in p.reason for p in problems)
