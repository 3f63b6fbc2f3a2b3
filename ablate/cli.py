"""The `ablate` command line. Heavy imports (torch, ray, mlflow) happen inside the commands, so
`ablate --help` answers at once. Exit codes: 0 ok, 1 failure, 2 bad input."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DESCRIPTION = """\
Hyperparameter and ablation searches for prompt learning on a frozen CLIP.

A study is one YAML file (see search_spaces/ and docs/search-spaces.md): a method, base
config overrides, the parameters to search, seeds, search algorithm and scheduler. Ray Tune
runs the trials, Optuna samples them, ASHA stops weak ones early, MLflow records every study,
trial and seed, and a Parquet table holds every (trial, seed, epoch) row.
"""

SEARCH_HELP = """\
Validate FILE, then run its search: every sampled configuration trains once per seed (the seeds
of a configuration run together in one trial and share the backbone), and the scheduler and the
searcher see the seed mean of the study metric after every epoch.

Anything after FILE is a Hydra override applied on top of the file's `base`, e.g.
    ablate search search_spaces/quickstart.yaml train.epochs=4 dataset.shots=8

An invalid file (or override) is reported with file, line, key and reason, exit status 2, and
nothing is launched. Results go to RESULTS_DIR/<study name>/results.parquet and to MLflow
(MLFLOW_TRACKING_URI or --tracking-uri; default: sqlite:///mlflow.db in this directory).
"""

EPILOG = """\
examples:
  ablate search search_spaces/quickstart.yaml --dry-run    # print the plan, run nothing
  ablate search search_spaces/quickstart.yaml              # run it (local Ray, SQLite MLflow)
  ablate methods                                           # registered methods and their knobs
  ablate submit search_spaces/quickstart.yaml --address http://HEAD:8265 --follow \
      --tracking-uri http://MLFLOW:5000 --storage s3://bucket/ablate   # on a Ray cluster
  mlflow ui --backend-store-uri sqlite:///mlflow.db        # review the runs
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from ablate.errors import AblateError

    try:
        return args.func(args)
    except AblateError as err:
        print(f"ablate: {type(err).__name__}:\n{err}", file=sys.stderr)
        return err.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ablate import __version__

    parser.add_argument("--version", action="version", version=f"ablate {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    search = commands.add_parser(
        "search",
        help="run a hyperparameter or ablation search from a YAML file",
        description=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("file", metavar="FILE", help="search-space YAML (see search_spaces/)")
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    search.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    search.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
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
        "--results-dir",
        default="results",
        type=Path,
        help="folder for the Parquet table and Ray's files (default: ./results)",
    )
    search.add_argument(
        "--system-metrics",
        action="store_true",
        help="sample CPU, memory and GPU use into every trial run (MLflow system metrics)",
    )
    search.set_defaults(func=cmd_search)

    ui = commands.add_parser(
        "ui",
        help="open a study in the MLflow UI",
        description="Start the MLflow UI on the study's tracking store (bound to 127.0.0.1 "
        "unless --host says otherwise) and print direct links to the study's experiment and "
        "its latest study run. With a remote tracking server, only print the links.",
    )
    ui.add_argument("study", nargs="?", help="study name (default: the latest study)")
    ui.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"
    )
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    ui.set_defaults(func=cmd_ui)

    sync = commands.add_parser(
        "sync",
        help="deliver MLflow calls a study spooled while the tracking server was unreachable",
        description="While MLflow is unreachable, trials keep training and their tracking calls "
        "wait in RESULTS_DIR/STUDY/mlflow-spool/ (the Parquet table has every metric either "
        "way). This delivers them, in order, once the server is back.",
    )
    sync.add_argument("study", help="study name (its folder under --results-dir)")
    sync.add_argument("--results-dir", default="results", type=Path, help="default: ./results")
    sync.add_argument("--tracking-uri", help="default: the URI the study was run with")
    sync.set_defaults(func=cmd_sync)

    report = commands.add_parser(
        "report",
        help="tables, statistics, plots and prompt inspection of a study",
        description="Analyse a study from its results table: ablation table (Markdown, LaTeX, "
        "CSV) with 95%% CIs over seeds and Holm-corrected paired t-tests, factor effects, "
        "parameter importance, learning curves, parallel coordinates, learned prompts, and one "
        "self-contained report.html. Writes RESULTS_DIR/STUDY/report/, logs it to the study's "
        "MLflow parent run, and rebuilds RESULTS_DIR/STUDY/optuna.db for optuna-dashboard.",
    )
    report.add_argument(
        "study",
        help="study name (a folder under --results-dir), a folder path, or a study on shared "
        "storage (s3://bucket/prefix/STUDY: copied to --results-dir first)",
    )
    report.add_argument("--results-dir", default="results", type=Path, help="default: ./results")
    report.add_argument("--tracking-uri", help="default: the URI the study was run with")
    report.add_argument(
        "--importance",
        default="fanova",
        choices=("fanova", "mdi", "ped-anova"),
        help="Optuna importance evaluator (default: fanova)",
    )
    report.add_argument("--no-mlflow", action="store_true", help="read and log nothing in MLflow")
    report.set_defaults(func=cmd_report)

    from ablate.datasets import add_parser as add_data_parser  # argparse only: cheap

    add_cluster_parsers(commands)
    add_data_parser(commands)
    methods = commands.add_parser("methods", help="list the registered methods and their knobs")
    methods.set_defaults(func=cmd_methods)
    return parser


def cmd_search(args: argparse.Namespace) -> int:
    from ablate import spec as specs

    spec = specs.load(args.file, args.overrides)
    if args.dry_run:
        print(specs.describe_plan(spec))
        return 0
    from ablate.run import run_search

    return run_search(
        spec,
        args.results_dir,
        args.tracking_uri,
        args.address,
        args.system_metrics,
        storage=args.storage,
    )


SUBMIT_HELP = """\
Validate FILE here, then run `ablate search` on a Ray cluster as a Ray job (Jobs API): the job
uploads the working directory (the current one, or --working-dir; FILE must be inside it) and
the ablate code, runs the driver on the head node and the trials on every node. It prints the
job id; --follow streams the job's logs until it ends.

A study on several machines needs storage they share (--storage: an NFS folder mounted on
every node at the same path, or s3://, gs://, ... through pyarrow) and an MLflow tracking
server they all reach (--tracking-uri http://HOST:5000); both are checked before anything is
submitted, and again from every node before the first trial. On a cluster on this machine
(--address http://127.0.0.1:8265) the defaults (./results, ./mlflow.db) work as they are.

Token authentication (Ray 2.60's default) stays on: the token is read as Ray reads it,
$RAY_AUTH_TOKEN, else the file named by $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token
(`ray get-auth-token` on the head node prints it), and sent with every request.
"""

CLUSTER_EPILOG = """\
examples:
  ablate submit search_spaces/quickstart.yaml --address http://HEAD:8265 \\
      --tracking-uri http://MLFLOW:5000 --storage s3://bucket/ablate train.epochs=10
  ablate status --address http://HEAD:8265               # the studies' jobs on the cluster
  ablate logs quickstart --follow --address http://HEAD:8265
  ablate stop quickstart --address http://HEAD:8265      # the study can be resubmitted to resume
(--address defaults to $RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS, then http://127.0.0.1:8265)
See cluster/README.md for cluster configs (ray up, KubeRay) and an MLflow server recipe.
"""


def add_cluster_parsers(commands: argparse._SubParsersAction) -> None:
    def cluster_command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=help,
            description=description,
            epilog=CLUSTER_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument(
            "--address",
            help="the cluster's dashboard / Jobs API, http://HEAD:8265 (default: "
            "$RAY_API_SERVER_ADDRESS, $RAY_ADDRESS, else http://127.0.0.1:8265)",
        )
        return parser

    submit = cluster_command("submit", "run a study on a Ray cluster as a Ray job", SUBMIT_HELP)
    submit.add_argument("file", metavar="FILE", help="search-space YAML (see search_spaces/)")
    submit.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    submit.add_argument(
        "--tracking-uri",
        help="MLflow tracking server the nodes reach (default: $MLFLOW_TRACKING_URI; "
        "sqlite:///mlflow.db only for a cluster on this machine)",
    )
    submit.add_argument(
        "--storage",
        metavar="PATH_OR_URI",
        help="shared results storage: NFS path or s3://, gs://, ... URI (needed on a remote "
        "cluster; default on a cluster on this machine: ./results)",
    )
    submit.add_argument(
        "--working-dir",
        type=Path,
        help="folder uploaded as the job's working directory (default: the current one)",
    )
    submit.add_argument(
        "--pip",
        nargs="?",
        const="project",
        metavar="REQUIREMENTS",
        help="install packages on the cluster for this job (runtime_env pip): alone, ablate's "
        "own dependencies; or a requirements file. Off by default: cluster images already "
        "have torch, ray and the rest (cluster/Dockerfile)",
    )
    submit.add_argument("--system-metrics", action="store_true", help="as for `ablate search`")
    submit.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    submit.set_defaults(func=cmd_submit)

    status = cluster_command(
        "status",
        "status of studies submitted to a Ray cluster",
        "Without JOB: every study job on the cluster, newest first. With a study name: its "
        "latest job; or a job id.",
    )
    status.add_argument("job", nargs="?", metavar="JOB", help="study name or job id")
    status.set_defaults(func=cmd_status)

    logs = cluster_command(
        "logs",
        "logs of a submitted study",
        "The driver's output of a study's latest job (or a job id): the plan, Ray Tune's trial "
        "table, the summary.",
    )
    logs.add_argument("job", metavar="JOB", help="study name or job id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    logs.set_defaults(func=cmd_logs)

    stop = cluster_command(
        "stop",
        "stop a submitted study",
        "Stop a study's running job (or a job id). The driver gets SIGINT and records the study "
        "as interrupted; submit the same file again to resume it.",
    )
    stop.add_argument("job", metavar="JOB", help="study name or job id")
    stop.set_defaults(func=cmd_stop)


def cmd_submit(args: argparse.Namespace) -> int:
    from ablate import cluster
    from ablate import spec as specs

    spec = specs.load(args.file, args.overrides)  # invalid: exit 2, nothing submitted
    return cluster.submit(
        spec,
        cluster.Submission(
            file=Path(args.file),
            overrides=list(args.overrides),
            address=args.address,
            tracking_uri=args.tracking_uri,
            storage=args.storage,
            working_dir=args.working_dir,
            pip=args.pip,
            system_metrics=args.system_metrics,
        ),
        follow=args.follow,
    )


def cmd_status(args: argparse.Namespace) -> int:
    from ablate import cluster

    return cluster.status(args.address, args.job)


def cmd_logs(args: argparse.Namespace) -> int:
    from ablate import cluster

    return cluster.logs(args.address, args.job, follow=args.follow)


def cmd_stop(args: argparse.Namespace) -> int:
    from ablate import cluster

    return cluster.stop(args.address, args.job)


def cmd_report(args: argparse.Namespace) -> int:
    from ablate.report import cmd_report as report

    return report(args)


def cmd_sync(args: argparse.Namespace) -> int:
    from ablate.run import sync

    return sync((args.results_dir / args.study).resolve(), args.tracking_uri)


def cmd_ui(args: argparse.Namespace) -> int:
    import contextlib
    import os
    import signal
    import subprocess

    from ablate import tracking
    from ablate.errors import AblateError

    uri = args.tracking_uri or tracking.default_tracking_uri()
    found = tracking.latest_study_run(uri, args.study)
    if found is None:
        what = f"study {args.study!r}" if args.study else "any study"
        error = AblateError(f"{uri} holds no runs of {what}; run `ablate search FILE` first")
        error.exit_code = 2
        raise error
    if not tracking.is_local_store(uri):
        print("\n".join(tracking.ui_links(uri, *found)))
        return 0
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {uri}, serving at {base} (Ctrl-C stops it)")
    print("\n".join(tracking.ui_links(base, *found)), flush=True)
    # mlflow ui starts workers of its own: run it in its own process group and stop the whole
    # group when we are stopped (Ctrl-C or SIGTERM), so nothing is left listening
    server = subprocess.Popen(
        tracking.ui_command(uri, args.host, args.port), start_new_session=True
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)


def cmd_methods(args: argparse.Namespace) -> int:
    import dataclasses

    import trainers

    for name in trainers.list_methods():
        cls = trainers.get_method(name)
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}")
        defaults = cls.Config()
        for f in dataclasses.fields(cls.Config):
            print(f"    method.{f.name} = {getattr(defaults, f.name)!r}")
    return 0


def run() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    code = main()
    if code and code != 2:
        print(f"ablate: failed after {time.monotonic() - started:.0f}s", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    run()
