"""The method registry: name -> PromptMethod class (its config class is `cls.Config`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from trainers.methods.base import MethodConfig, PromptMethod

_METHODS: dict[str, type[PromptMethod]] = {}
M = TypeVar("M", bound="type[PromptMethod]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a PromptMethod available under `name` (config group `method=name`)."""

    def add(cls: M) -> M:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name]}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def get_method(name: str) -> type[PromptMethod]:
    """The method registered as `name`; the error lists the valid names."""
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(
            f"unknown method {name!r}; registered: {', '.join(list_methods())}"
        ) from None


def list_methods() -> list[str]:
    return sorted(_METHODS)


def method_for_config(cfg: MethodConfig) -> type[PromptMethod]:
    """The method whose config class is exactly `type(cfg)`."""
    for cls in _METHODS.values():
        if type(cfg) is cls.Config:
            return cls
    raise KeyError(f"no registered method uses config class {type(cfg).__name__}")
