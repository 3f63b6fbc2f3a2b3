"""Hydra/OmegaConf live here and only here: compose overrides into a typed TrialConfig.

The config groups are `method` (one per registered method, schema = the method's Config
dataclass), `dataset`, `backbone` and `optim` (YAML presets in `ablate/conf/`, checked against
the trainers' dataclasses). A dotted key such as `method.prompt_length` is the same string in the
search-space file, Hydra, MLflow params and the Parquet table.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

import trainers
import trainers.backbone
from ablate.errors import ConfigError
from ablate.overrides import GROUPS
from trainers.configs import TrialConfig

CONF_DIR = Path(__file__).parent / "conf"


@functools.cache
def _register_schemas() -> None:
    store = ConfigStore.instance()
    store.store(name="trial_schema", node=TrialConfig)
    for name in trainers.list_methods():
        store.store(group="method", name=name, node=trainers.get_method(name).Config)


def compose(overrides: list[str]) -> TrialConfig:
    """The trial config for `overrides` (group choices first, then dotted values).

    Raises:
        ConfigError: an unknown key or option, a value of the wrong type, or a value the
            dataclass rejects; the message names the override and the reason.
    """
    cfg = compose_raw(overrides)
    try:
        trial = OmegaConf.to_object(cfg)  # runs the dataclasses' __post_init__ validation
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    return fit_to_backbone(trial)


def fit_to_backbone(cfg: TrialConfig) -> TrialConfig:
    """Scale the method's paper-default depths to a shallower backbone (recorded as used)."""
    try:
        dims = trainers.backbone.dims_of(cfg.backbone.model)
    except ValueError:  # an unknown backbone: validation names it
        return cfg
    return dataclasses.replace(cfg, method=cfg.method.for_backbone(dims))


def compose_raw(overrides: list[str]) -> Any:
    """The composed DictConfig (for printing and validation).

    Hydra reads and merges the config files for every composition (~60 ms); trials and
    validation compose many override lists that differ only in values. So the group choices
    (`optim=maple`) are composed by Hydra once per process and the values applied to a copy by
    Hydra's own parser and code, as its compose applies them after the defaults. An override
    list of any other form (`+key`, `~key`, a sweep, a `hydra.` key) is composed whole.
    """
    _register_schemas()
    choices, values = [], []
    for o in overrides:
        (choices if _CHOICE.fullmatch(o) else values).append(o)
    if not all(_VALUE.fullmatch(o) for o in values):
        return _hydra_compose(tuple(overrides))
    try:
        parsed = OverridesParser.create().parse_overrides(values)
        ConfigLoaderImpl.validate_sweep_overrides_legal(parsed, RunMode.RUN, from_shell=False)
        cfg = copy.deepcopy(_composed_choices(tuple(choices)))
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        return cfg
    except ConfigError:
        raise
    except Exception as err:  # Hydra raises several unrelated exception types
        raise ConfigError(_explain(err)) from None


_GROUP = "|".join(GROUPS)
_CHOICE = re.compile(rf"(?:{_GROUP})=[\w.-]+")  # a group's option, as the study file gives it
_VALUE = re.compile(rf"(?!hydra\.|(?:{_GROUP})=)[\w.]+=.*", re.DOTALL)  # key=value, no prefix


@functools.lru_cache(maxsize=64)
def _composed_choices(choices: tuple[str, ...]) -> Any:
    """Hydra's composition of these group choices alone (never changed: callers copy it)."""
    return _hydra_compose(choices)


def _hydra_compose(overrides: tuple[str, ...]) -> Any:
    _register_schemas()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("trial", overrides=list(overrides))
    except Exception as err:  # Hydra raises several unrelated exception types
        raise ConfigError(_explain(err)) from None


def group_options(group: str) -> list[str]:
    """The options of a config group (e.g. datasets with a preset)."""
    if group == "method":
        return trainers.list_methods()
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def to_flat_dict(cfg: TrialConfig) -> dict[str, Any]:
    """The resolved config as {dotted key: value}, with the method's name under `method`."""
    flat: dict[str, Any] = {"method": trainers.method_for_config(cfg.method).name}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            for key, item in dataclasses.asdict(value).items():
                flat[f"{field.name}.{key}"] = item
        else:
            flat[field.name] = value
    return flat


def to_yaml(cfg: TrialConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_flat_dict(cfg)))


def _explain(err: Exception) -> str:
    """Hydra's message plus the reason it wraps, minus its search-path boilerplate."""
    text = str(err).split("\nConfig search path:")[0].strip()
    text = text.split("\nTo append to your config use")[0].rstrip(".")  # no new keys
    cause = err.__cause__
    while cause is not None:
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if reason not in text:
            text += f": {reason}"
        cause = cause.__cause__
    return text
