"""Reading a study file: the text, its YAML, the line of every key, and the checks of one value.

`FileChecks` collects every problem (file, line, key, reason) instead of stopping at the first;
its value checks read the declaration (`fields.knobs`), so a section's keys, defaults, bounds and
choices are not written again here. `validate.py` adds the study's own checks on top.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import Problem
from ablate.spec.fields import Knob, keys, knobs

Special = Callable[[dict, str], Any]  # a key whose check the declaration cannot express


class FileChecks:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def add(self, key: str, reason: str) -> None:
        line = self.lines.get(key) or self.lines.get(key.split(".")[0])
        self.problems.append(Problem(self.file, key, reason, line))

    # -- reading
    def read(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.add("", "file not found")
        except IsADirectoryError:
            self.add("", "is a directory, expected a YAML file")
        except (OSError, UnicodeDecodeError) as err:
            self.add("", f"cannot read the file: {err}")
        return ""

    def parse(self, text: str) -> dict[str, Any] | None:
        if self.problems:
            return None
        keys = KeyWalk()
        try:
            raw = yaml.safe_load(text)
            keys.walk(yaml.compose(text))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark else None
            reason = getattr(err, "problem", None) or str(err)
            self.problems.append(Problem(self.file, "", f"invalid YAML: {reason}", line))
            return None
        self.lines = keys.lines
        for key, first, again in keys.duplicates:
            reason = f"duplicate key (lines {first} and {again}); YAML would keep only the last"
            self.problems.append(Problem(self.file, key, reason, again))
        if not isinstance(raw, dict):
            self.add("", f"expected a mapping of study keys, got {kind(raw)}")
            return None
        return raw

    # -- shape
    def string(self, raw: dict, key: str, required: bool = False) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                self.add(key, "required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"expected a non-empty string, got {kind(value)}")
            return None
        return value

    def mapping(self, raw: dict, key: str, where: str | None = None) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(where or key, f"expected a mapping, got {kind(value)}")
            return {}
        return value

    def integer(self, raw: dict, key: str, default: int, minimum: int, where: str = "") -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(where or key, f"expected an integer >= {minimum}, got {value!r}")
            return default
        return value

    def number(self, raw: dict, key: str, default: float, minimum: float, where: str) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.add(where, f"expected a number >= {minimum}, got {value!r}")
            return default
        return float(value)

    def choice(self, raw: dict, key: str, default: str, choices: tuple, where: str) -> str:
        value = raw.get(key, default)
        if value not in choices:
            self.add(where, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def unknown(self, raw: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key not in allowed:
                self.add(f"{where}.{key}", f"unknown key; expected one of {', '.join(allowed)}")

    def section(
        self, raw: dict, name: str, cls: type, special: dict[str, Special] | None = None
    ) -> dict[str, Any]:
        """One declared section's values: unknown keys refused, each key checked against its
        declaration (or its `special` check), a key not given taking its default."""
        body = self.mapping(raw, name)
        self.unknown(body, keys(cls), name)
        special = special or {}
        values = {}
        for k in knobs(cls):
            where = f"{name}.{k.name}"
            check = special.get(k.name)
            values[k.name] = check(body, where) if check else self.value(body, k, where)
        return values

    def value(self, raw: dict, k: Knob, where: str) -> Any:
        if k.name not in raw:
            return k.default
        if k.choices is not None:
            return self.choice(raw, k.name, k.default, k.choices(), where)
        if k.kind == "int":
            return self.integer(raw, k.name, k.default, int(k.minimum or 0), where)
        if k.kind == "float":
            return self.number(raw, k.name, k.default, k.minimum or 0.0, where)
        raise TypeError(f"{where}: no check is declared for {k.kind}")


def knob_of(cls: type, name: str) -> Knob:
    return next(k for k in knobs(cls) if k.name == name)


def kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]


class KeyWalk:
    """One walk over a composed YAML document: the line of every dotted key (the last one if
    repeated) and every key given twice in one mapping as (dotted key, first line, again)."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.duplicates: list[tuple[str, int, int]] = []
        self._walked: set[int] = set()

    def walk(self, node: yaml.Node, prefix: str = "", within: tuple[yaml.Node, ...] = ()) -> None:
        if any(node is outer for outer in within):  # `&x {a: *x}` would never end
            raise yaml.composer.ComposerError(
                problem="an anchor used inside itself (a recursive alias)",
                problem_mark=node.start_mark,
            )
        if id(node) in self._walked:  # an alias: walked once, however often it is used
            return
        self._walked.add(id(node))
        within = (*within, node)
        if isinstance(node, yaml.SequenceNode):  # items as `key[i]`, maybe mappings inside
            for i, item in enumerate(node.value):
                indexed = f"{prefix.removesuffix('.')}[{i}]"
                self.lines[indexed] = item.start_mark.line + 1
                self.walk(item, f"{indexed}.", within)
        elif isinstance(node, yaml.MappingNode):
            self._mapping(node, prefix, within)

    def _mapping(self, node: yaml.MappingNode, prefix: str, within: tuple) -> None:
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + 1
            if key_node.tag != "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, not repeats
                identity = _key_identity(key_node)
                if identity in first:
                    self.duplicates.append((key, first[identity], line))
                first.setdefault(identity, line)
            self.lines[key] = line
            self.walk(value_node, f"{key}.", within)


def _key_identity(node: yaml.Node) -> Any:
    """The key as the loader builds it: `1` and `01`, or `true` and `yes`, are one key."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, TypeError):
        return (node.tag, str(node.value))
