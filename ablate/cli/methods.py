"""`ablate methods`: the registered prompt-learning methods and their knobs."""

from __future__ import annotations

import argparse
import sys
import textwrap

from ablate.cli.parser import Commands, help_width


def add_parsers(commands: Commands) -> None:
    methods = commands.add_parser(
        "methods",
        help="list the registered methods and their knobs",
        description="Every registered prompt-learning method with its knobs: the key a study "
        "sets (in `base` or `parameters`), its default (the paper's) and what it does.",
    )
    methods.set_defaults(func=cmd_methods)


def cmd_methods(args: argparse.Namespace) -> int:
    import trainers

    for name in trainers.list_methods():
        print(describe_method(name, trainers.get_method(name)))
    return 0


def describe_method(name: str, cls: type) -> str:
    """A method's first docstring line, then each knob: `method.KEY = default` and its help
    below, wrapped to the terminal."""
    import dataclasses

    from trainers.methods.base import knob_help

    doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
    width = help_width()

    def wrap(text: str, indent: int, hanging: int) -> list[str]:
        first, rest = " " * indent, " " * (indent + hanging)
        return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest)

    lines = wrap(f"{name}: {doc[0] if doc else ''}", 0, 4)
    defaults = cls.Config()
    for f in dataclasses.fields(cls.Config):
        lines += wrap(f"method.{f.name} = {getattr(defaults, f.name)!r}", 4, 4)
        lines += wrap(knob_help(cls.Config, f.name) or "(no help)", 8, 0)
    return "\n".join(lines)
