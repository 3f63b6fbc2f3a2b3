"""The `ablate` command line. Heavy imports (torch, ray, mlflow) happen inside the commands, so
`ablate --help` answers at once. Exit codes: 0 ok, 1 failure, 2 bad input.

A command lives in a module of this package with `add_parsers(commands)` (its subparsers, each
with `set_defaults(func=cmd_...)`); adding one is a module and an entry in COMMANDS. Modules:
`parser` (help layout, shared options, console output), `search`, `review` (ui, sync, report),
`cluster` (submit, status, logs, stop), `data` (data check | prepare), `methods`, `schema`.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from ablate.cli import cluster, data, methods, review, schema, search
from ablate.cli.parser import Parser, configure_output

DESCRIPTION = """\
Hyperparameter and ablation searches for prompt learning on a frozen CLIP.

A study is one YAML file (see search_spaces/ and docs/search-spaces.md): a method, base
config overrides, the parameters to search, seeds, search algorithm and scheduler. Ray Tune
runs the trials, Optuna samples them, ASHA stops weak ones early, MLflow records every study,
trial and seed, and a Parquet table holds every (trial, seed, epoch) row.
"""

EPILOG = """\
examples:
  # print the plan and run nothing; then run it (local Ray, MLflow: ./mlflow.db)
  ablate search search_spaces/quickstart.yaml --dry-run
  ablate search search_spaces/quickstart.yaml
  # review it: in the MLflow UI; as tables, tests and plots
  ablate ui quickstart
  ablate report quickstart
  # the registered methods and their knobs; the study format as a JSON Schema
  ablate methods
  ablate schema
  # on a Ray cluster
  ablate submit search_spaces/quickstart.yaml --address http://HEAD:8265 \\
      --tracking-uri http://MLFLOW:5000 --storage s3://bucket/ablate --follow
"""

# in the order `ablate --help` lists them
COMMANDS = (search, review, cluster, data, methods, schema)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    configure_output(getattr(args, "verbosity", None) or 0)
    from ablate.errors import AblateError

    try:
        return args.func(args)
    except AblateError as err:
        print(f"ablate: error: {err}", file=sys.stderr)
        return err.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ablate", description=DESCRIPTION, epilog=EPILOG)
    from ablate import __version__

    parser.add_argument("--version", action="version", version=f"ablate {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for module in COMMANDS:
        module.add_parsers(commands)
    return parser


def run() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    code = main()
    if code and code != 2:
        print(f"ablate: failed after {time.monotonic() - started:.0f}s", file=sys.stderr)
    # the process ends here: its last garbage collection would walk every object torch, Ray
    # and MLflow made (1-2 s after a search's summary); exit handlers and flushes still run
    gc.freeze()
    sys.exit(code)
