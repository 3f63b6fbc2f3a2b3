"""Hydra override strings, free of Hydra and the trainers: a study file can be read (and a
report written) without importing the composition machinery in `ablate.config`."""

from __future__ import annotations

import math
import re
from typing import Any

GROUPS = ("method", "dataset", "backbone", "optim")


def to_override(key: str, value: Any) -> str:
    """The Hydra override that sets `key` to `value`; composing it yields `value` again."""
    if key in GROUPS:
        return f"{key}={value}"
    return f"{key}={_literal(value)}"


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # Hydra reads a backslash literally unless it precedes a quote or ends the string
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
        return "'" + escaped.replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {value!r} ({type(value).__name__}) as a Hydra override")
