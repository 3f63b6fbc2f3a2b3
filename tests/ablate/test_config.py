"""Hydra composition and the override round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ablate import config
from ablate.errors import ConfigError
from trainers.methods.maple import MaPLeConfig

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    texts,
    st.lists(st.integers(0, 9), max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_to_override_round_trips_through_hydras_parser(value):
    """Hydra parses to_override(k, v) back to v (floats, ints, bools, strings, lists, null)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(config.to_override("a.b", value))
    assert override.key_or_group == "a.b"
    assert override.value() == value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optim.lr", 3.1e-05),
        ("train.epochs", 7),
        ("train.test_at_end", False),
        ("dataset.template", "it's a {} = 'x', [y]"),
        ("dataset.root", None),
        ("dataset.root", "/data/some dir"),
    ],
)
def test_to_override_round_trips_through_compose(key, value):
    section, field = key.split(".")
    raw = config.compose_raw([config.to_override(key, value)])
    assert raw[section][field] == value


def test_compose_gives_typed_dataclasses():
    cfg = config.compose(["method=maple", "method.prompt_depth=2", "optim.lr=0.01"])
    assert isinstance(cfg.method, MaPLeConfig) and cfg.method.prompt_depth == 2
    assert cfg.optim.lr == 0.01
    flat = config.to_flat_dict(cfg)
    assert flat["method"] == "maple" and flat["method.prompt_depth"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.nope=1"], "Key 'nope' not in 'CoOpConfig'"),
        (["method.prompt_length=abc"], "could not be converted to Integer"),
        (["optim.lr=-1"], "optim.lr must be > 0"),
        (["method=nope"], "Could not find 'method/nope'"),
    ],
)
def test_bad_overrides_name_the_key_and_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.compose(overrides)


def test_group_options_list_the_presets():
    assert "digits" in config.group_options("dataset")
    assert {"tiny", "vit_b16"} <= set(config.group_options("backbone"))
    assert "coop" in config.group_options("method")
