"""The `ablate` command line. Heavy imports (torch, ray, mlflow) happen inside the commands, so
`ablate --help` answers at once. Exit codes: 0 ok, 1 failure, 2 bad input."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

MAX_WIDTH = 100  # help text is wrapped to the terminal, but never wider than this

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
(--tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder). Running
the same command again resumes an interrupted study or extends a finished one.
"""

EPILOG = """\
examples:
  # print the plan and run nothing; then run it (local Ray, MLflow: ./mlflow.db)
  ablate search search_spaces/quickstart.yaml --dry-run
  ablate search search_spaces/quickstart.yaml
  # review it: in the MLflow UI; as tables, tests and plots
  ablate ui quickstart
  ablate report quickstart
  # the registered methods and their knobs
  ablate methods
  # on a Ray cluster
  ablate submit search_spaces/quickstart.yaml --address http://HEAD:8265 \\
      --tracking-uri http://MLFLOW:5000 --storage s3://bucket/ablate --follow
"""

TRACKING_URI_HELP = (
    "MLflow tracking URI: a server (http://HOST:5000) or a local store (sqlite:///PATH). "
    "Default: for an existing study (sync, report, ui), the URI it ran with; else "
    "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder"
)
RESULTS_DIR_HELP = "folder that holds one folder per study (default: ./results)"
USER_MLFLOW_LEVEL = os.environ.get("MLFLOW_LOGGING_LEVEL")  # the user's choice wins


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


class _Stdout(logging.StreamHandler):
    """A handler that writes to whatever sys.stdout is at the time (tests replace it)."""

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_output(verbosity: int) -> None:
    """One `ablate` logger, on stdout: -q (-1) keeps only warnings (the summary is printed
    either way), -v (1) adds the details; MLflow's and Optuna's loggers follow, unless the user
    set MLFLOW_LOGGING_LEVEL."""
    verbosity = max(-1, min(1, verbosity))
    log = logging.getLogger("ablate")
    log.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])
    log.propagate = False
    if not any(isinstance(h, _Stdout) for h in log.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    others = {-1: "ERROR", 0: "WARNING", 1: "INFO"}[verbosity]
    logging.getLogger("optuna").setLevel(others)
    if USER_MLFLOW_LEVEL is None:
        os.environ["MLFLOW_LOGGING_LEVEL"] = others  # read where MLflow is imported (Ray too)
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(others)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions and epilogs to the terminal width (at most MAX_WIDTH) paragraph by
    paragraph; indented lines (examples) stay as they are written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        paragraph: list[str] = []

        def wrap() -> None:
            if paragraph:
                lines.extend(
                    textwrap.wrap(
                        " ".join(paragraph),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
                paragraph.clear()

        for line in text.splitlines():
            if line.strip() and not line[0].isspace():
                paragraph.append(line.strip())
                continue
            wrap()
            lines.append(indent + line if line.strip() else "")
        wrap()
        return "\n".join(lines)


def help_width() -> int:
    return min(shutil.get_terminal_size().columns, MAX_WIDTH) - 2


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: the same help layout everywhere."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    """Options several commands take, declared once (one help text each)."""
    tracking = argparse.ArgumentParser(add_help=False)
    tracking.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)
    results_dir = argparse.ArgumentParser(add_help=False)
    results_dir.add_argument(
        "--results-dir", default=Path("results"), type=Path, help=RESULTS_DIR_HELP
    )
    output = argparse.ArgumentParser(add_help=False)
    group = output.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        help="print only the result (a study's summary) and warnings",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=1,
        help="print every detail: Tune's result of every epoch, Ray's and MLflow's own logs",
    )
    return {"tracking": tracking, "results_dir": results_dir, "output": output}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablate", description=DESCRIPTION, epilog=EPILOG)
    from ablate import __version__

    parser.add_argument("--version", action="version", version=f"ablate {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    shared = _shared_options()
    tracking, results_dir, output = shared["tracking"], shared["results_dir"], shared["output"]

    search = commands.add_parser(
        "search",
        help="run a hyperparameter or ablation search from a YAML file",
        description=SEARCH_HELP,
        parents=[tracking, results_dir, output],
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

    ui = commands.add_parser(
        "ui",
        help="open a study in the MLflow UI",
        description="Start the MLflow UI on the study's tracking store (bound to 127.0.0.1 "
        "unless --host says otherwise) and print direct links to the study's experiment and "
        "its latest study run. With a remote tracking server, only print the links. An unknown "
        "study, or no store, is an error that names the studies there are.",
        parents=[tracking, results_dir],
    )
    ui.add_argument("study", nargs="?", help="study name (default: the latest study)")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    ui.set_defaults(func=cmd_ui)

    sync = commands.add_parser(
        "sync",
        help="deliver MLflow calls a study spooled while the tracking server was unreachable",
        description="While MLflow is unreachable, trials keep training and their tracking calls "
        "wait in RESULTS_DIR/STUDY/mlflow-spool/ (the Parquet table has every metric either "
        "way). This delivers them, in order, once the server is back.",
        parents=[tracking, results_dir],
    )
    sync.add_argument("study", help="study name (its folder under --results-dir)")
    sync.set_defaults(func=cmd_sync)

    report = commands.add_parser(
        "report",
        help="tables, statistics, plots and prompt inspection of a study",
        description="Analyse a study from its results table: ablation table (Markdown, LaTeX, "
        "CSV) with 95% CIs over seeds and Holm-corrected paired t-tests, factor effects, "
        "parameter importance, learning curves, parallel coordinates, learned prompts, and one "
        "self-contained report.html. Writes RESULTS_DIR/STUDY/report/, logs it to the study's "
        "MLflow parent run, and rebuilds RESULTS_DIR/STUDY/optuna.db for optuna-dashboard.",
        parents=[tracking, results_dir],
    )
    report.add_argument(
        "study",
        help="study name (a folder under --results-dir), a folder path, or a study on shared "
        "storage (s3://bucket/prefix/STUDY: copied to --results-dir first)",
    )
    report.add_argument(
        "--importance",
        default="fanova",
        choices=("fanova", "mdi", "ped-anova"),
        help="Optuna importance evaluator (default: fanova)",
    )
    report.add_argument("--no-mlflow", action="store_true", help="read and log nothing in MLflow")
    report.set_defaults(func=cmd_report)

    from ablate.datasets import add_parser as add_data_parser  # argparse only: cheap

    add_cluster_parsers(commands, shared)
    add_data_parser(commands)
    methods = commands.add_parser(
        "methods",
        help="list the registered methods and their knobs",
        description="Every registered prompt-learning method with its knobs: the key a study "
        "sets (in `base` or `parameters`), its default (the paper's) and what it does.",
    )
    methods.set_defaults(func=cmd_methods)
    return parser


def cmd_search(args: argparse.Namespace) -> int:
    from ablate import spec as specs

    spec = specs.load(args.file, args.overrides)
    if args.dry_run:
        print(specs.describe_plan(spec))
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


SUBMIT_HELP = """\
Validate FILE here, then run `ablate search` on a Ray cluster as a Ray job (Jobs API): the job
uploads the working directory (the current one, or --working-dir; FILE must be inside it) and
the ablate code, runs the driver on the head node and the trials on every node. It prints the
job id; --follow streams the job's logs until it ends.

A study on several machines needs storage they share (--storage: an NFS folder mounted on
every node at the same path, or s3://, gs://, ... through pyarrow) and an MLflow tracking
server they all reach (--tracking-uri http://HOST:5000); both are checked before anything is
submitted, and again from every node before the first trial. On a cluster on this machine
(--address http://127.0.0.1:8265) the defaults work as they are: the results go to ./results
and MLflow to ./mlflow.db of the folder you submit from, as with `ablate search`.

Token authentication (Ray 2.60's default) stays on: the token is read as Ray reads it,
$RAY_AUTH_TOKEN, else the file named by $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token
(`ray get-auth-token` on the head node prints it), and sent with every request. See
cluster/README.md for cluster configs (ray up, KubeRay) and an MLflow server recipe.
"""

SUBMIT_EPILOG = """\
examples:
  # a cluster on this machine (its dashboard at http://127.0.0.1:8265)
  ablate submit search_spaces/quickstart.yaml --follow
  # a remote cluster
  ablate submit search_spaces/quickstart.yaml --address http://HEAD:8265 \\
      --tracking-uri http://MLFLOW:5000 --storage s3://bucket/ablate --follow
"""

ADDRESS_HELP = (
    "the cluster's dashboard (Jobs API), http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
    "else $RAY_ADDRESS, else http://127.0.0.1:8265)"
)


def add_cluster_parsers(
    commands: argparse._SubParsersAction, shared: dict[str, argparse.ArgumentParser]
) -> None:
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument("--address", help=ADDRESS_HELP)

    submit = commands.add_parser(
        "submit",
        help="run a study on a Ray cluster as a Ray job",
        description=SUBMIT_HELP,
        epilog=SUBMIT_EPILOG,
        parents=[address, shared["tracking"], shared["output"]],
    )
    submit.add_argument("file", metavar="FILE", help="search-space YAML (see search_spaces/)")
    submit.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    submit.add_argument(
        "--storage",
        metavar="PATH_OR_URI",
        help="shared results storage: NFS path or s3://, gs://, ... URI (needed on a remote "
        "cluster; default on a cluster on this machine: ./results)",
    )
    submit.add_argument(
        "--working-dir",
        type=Path,
        metavar="DIR",
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

    status = commands.add_parser(
        "status",
        help="status of studies submitted to a Ray cluster",
        description="Without JOB: every study job on the cluster, newest first. With a study "
        "name: its latest job; or a job id.",
        epilog="example:\n  ablate status quickstart --address http://HEAD:8265",
        parents=[address],
    )
    status.add_argument("job", nargs="?", metavar="JOB", help="study name or job id")
    status.set_defaults(func=cmd_status)

    logs = commands.add_parser(
        "logs",
        help="logs of a submitted study",
        description="The driver's output of a study's latest job (or a job id): the plan, Ray "
        "Tune's trial table, the summary.",
        epilog="example:\n  ablate logs quickstart --follow --address http://HEAD:8265",
        parents=[address],
    )
    logs.add_argument("job", metavar="JOB", help="study name or job id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    logs.set_defaults(func=cmd_logs)

    stop = commands.add_parser(
        "stop",
        help="stop a submitted study",
        description="Stop a study's running job (or a job id). The driver gets SIGINT and "
        "records the study as interrupted; submit the same file again to resume it.",
        epilog="example:\n  ablate stop quickstart --address http://HEAD:8265",
        parents=[address],
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
            verbosity=args.verbosity or 0,
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
    from ablate.errors import UnknownStudy, local_studies

    name = args.study
    if "://" not in name and not Path(name).is_dir() and not (args.results_dir / name).is_dir():
        raise UnknownStudy(
            f"no study {name!r} in {args.results_dir}",
            local_studies(args.results_dir),
            "there",
        )
    from ablate.report import cmd_report as report

    return report(args)


def cmd_sync(args: argparse.Namespace) -> int:
    from ablate.search.driver import sync

    return sync((args.results_dir / args.study).resolve(), args.tracking_uri)


def recorded_uri(results_dir: Path, study: str | None) -> str | None:
    """The tracking URI a study run here was logged to (its study.json), if any."""
    path = results_dir / study / "study.json" if study else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("tracking_uri") or None
    except (ValueError, AttributeError):
        return None


def cmd_ui(args: argparse.Namespace) -> int:
    import contextlib
    import signal
    import subprocess

    from ablate import tracking
    from ablate.errors import UnknownStudy, local_studies

    uri = (
        args.tracking_uri
        or recorded_uri(args.results_dir, args.study)
        or tracking.default_tracking_uri()
    )
    store = tracking.local_store_path(uri)
    if store is not None and not store.exists():  # MLflow would create an empty one
        raise UnknownStudy(
            f"no MLflow store at {store}",
            local_studies(args.results_dir),
            f"in {args.results_dir}",
            "`ablate search FILE` creates it; --tracking-uri or $MLFLOW_TRACKING_URI name "
            "another store",
        )
    found = tracking.latest_study_run(uri, args.study)
    if found is None:
        missing = f"no study {args.study!r}" if args.study else "no study"
        raise UnknownStudy(f"{missing} in {uri}", tracking.study_names(uri), "there")
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


def run() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    code = main()
    if code and code != 2:
        print(f"ablate: failed after {time.monotonic() - started:.0f}s", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    run()
