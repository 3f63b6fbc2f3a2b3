"""`ablate search FILE [KEY=VALUE ...]`: validate a study file, then run its search."""

from __future__ import annotations

import argparse

from ablate.cli.parser import Commands, output_options, results_dir_option, tracking_option

SEARCH_HELP = """\
Validate FILE, then run its search: every sampled configuration trains once per seed (the seeds
of a configuration run together in one trial and share the backbone), and the scheduler and the
searcher see the seed mean of the study metric after every epoch.

Anything after FILE is a Hydra override applied on top of the file's `base`, e.g.
    ablate search search_spaces/quickstart.yaml train.epochs=4 dataset.shots=8

An invalid file (or override) is reported with file, line, key and reason, exit status 2, and
nothing is launched. Results go to RESULTS_DIR/<study name>/results.parquet and to MLflow
(--tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder). Running
the same command again resumes an interrupted study or extends a finished one.
"""


def add_parsers(commands: Commands) -> None:
    search = commands.add_parser(
        "search",
        help="run a hyperparameter or ablation search from a YAML file",
        description=SEARCH_HELP,
        parents=[tracking_option(), results_dir_option(), output_options()],
    )
    search.add_argument("file", metavar="FILE", help="search-space YAML (see search_spaces/)")
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    search.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    search.add_argument(
        "--address",
        help="Ray cluster address, HEAD:6379 or `auto` (default: start a local Ray on "
        "127.0.0.1); to run the driver on the cluster, use `ablate submit`",
    )
    search.add_argument(
        "--storage",
        metavar="PATH_OR_URI",
        help="shared storage for a study on a multi-node cluster, instead of --results-dir: a "
        "folder every node mounts at the same path (NFS) or an object store URI that pyarrow "
        "opens (s3://bucket/prefix, gs://..., file:///...); checked from every node first",
    )
    search.add_argument(
        "--system-metrics",
        action="store_true",
        help="sample CPU, memory and GPU use into every trial run (MLflow system metrics)",
    )
    search.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from ablate.spec import describe_plan, load

    spec = load(args.file, args.overrides)
    if args.dry_run:
        print(describe_plan(spec))
        return 0
    from ablate.search.driver import run_search

    return run_search(
        spec,
        args.results_dir,
        args.tracking_uri,
        args.address,
        args.system_metrics,
        storage=args.storage,
    )
