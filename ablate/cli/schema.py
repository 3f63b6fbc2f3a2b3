"""`ablate schema`: the JSON Schema of search-space files, for editors and other tools."""

from __future__ import annotations

import argparse
import sys

from ablate.cli.parser import Commands


def add_parsers(commands: Commands) -> None:
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of search-space files",
        description="Print the study file format as a JSON Schema (draft 2020-12): every key "
        "with its type, default and choices, each method's knobs with their help, the "
        "dataset/backbone/optim presets. search_spaces/study.schema.json is a copy; editors "
        "with YAML support read it through the first line of a study file: "
        "`# yaml-language-server: $schema=./study.schema.json`.",
        epilog="example:\n  ablate schema > my_studies/study.schema.json",
    )
    schema.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from ablate.spec import schema

    sys.stdout.write(schema.render())
    return 0
