"""How the study format is declared: each key of a section is a dataclass field made with `knob`.

The field gives the key's name, type (from the annotation), default, and `knob`'s metadata its
lower bound, choices and help. Validation (`validate.py`) and the JSON Schema (`schema.py`) both
read the declaration through `knobs`, so a key, a default or a choice is written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Choices = Callable[[], tuple[str, ...]]  # read when checked, so a table entry added later counts


def knob(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    minimum: float | None = None,
    choices: Choices | None = None,
    file: bool = True,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A declared key: `file=False` marks a field the study file does not set."""
    metadata = {"help": help, "minimum": minimum, "choices": choices, "file": file}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Knob:
    """One key of the study file as the declaration gives it."""

    name: str
    kind: str  # the annotation: "int", "float", "str", "bool", or a class/collection name
    default: Any
    help: str
    minimum: float | None
    choices: Choices | None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def knobs(cls: type) -> list[Knob]:
    """The file keys of a declared section, in declaration order."""
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("file", True):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        found.append(
            Knob(
                f.name,
                kind,
                default,
                meta.get("help", ""),
                meta.get("minimum"),
                meta.get("choices"),
            )
        )
    return found


def keys(cls: type) -> tuple[str, ...]:
    return tuple(k.name for k in knobs(cls))
