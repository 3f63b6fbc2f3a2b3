"""Commands on a study that has run: `ablate ui` (the MLflow UI on its store), `ablate sync`
(deliver the MLflow calls it spooled) and `ablate report` (tables, statistics, plots)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ablate.cli.parser import Commands, results_dir_option, tracking_option

STUDY_COMMANDS = {  # name: (help, description, the study argument's help)
    "ui": (
        "open a study in the MLflow UI",
        "Start the MLflow UI on the study's tracking store (bound to 127.0.0.1 unless --host "
        "says otherwise) and print direct links to the study's experiment and its latest study "
        "run. With a remote tracking server, only print the links. An unknown study, or no "
        "store, is an error that names the studies there are.",
        "study name (default: the latest study)",
    ),
    "sync": (
        "deliver MLflow calls a study spooled while the tracking server was unreachable",
        "While MLflow is unreachable, trials keep training and their tracking calls wait in "
        "RESULTS_DIR/STUDY/mlflow-spool/ (the Parquet table has every metric either way). This "
        "delivers them, in order, once the server is back (runs created meanwhile included), "
        "then closes the runs left RUNNING with their trials' statuses from the results table "
        "(unless the study is running).",
        "study name (its folder under --results-dir)",
    ),
    "report": (
        "tables, statistics, plots and prompt inspection of a study",
        "Analyse a study from its results table: ablation table (Markdown, LaTeX, CSV) with "
        "95% CIs over seeds and Holm-corrected paired t-tests, factor effects, parameter "
        "importance, learning curves, parallel coordinates, learned prompts, and one "
        "self-contained report.html. Writes RESULTS_DIR/STUDY/report/, logs it to the study's "
        "MLflow parent run, and rebuilds RESULTS_DIR/STUDY/optuna.db for optuna-dashboard. "
        "A study over a suite of datasets also gets the papers' table (base / new / HM per "
        "dataset and the average, paper.md and paper.tex). Several studies (`ablate report A "
        "B`: one per method, or a method before and after a change) are put side by side in "
        "that layout, each by its best configuration, with paired tests against the first, in "
        "RESULTS_DIR/comparisons/A+B/.",
        "study name (a folder under --results-dir), a folder path, or a study on shared "
        "storage (s3://bucket/prefix/STUDY: copied to --results-dir first); several to compare",
    ),
}


def add_parsers(commands: Commands) -> None:
    parents = [tracking_option(), results_dir_option()]
    funcs = {"ui": cmd_ui, "sync": cmd_sync, "report": cmd_report}
    parsers = {}
    for name, (summary, description, study_help) in STUDY_COMMANDS.items():
        parsers[name] = commands.add_parser(
            name, help=summary, description=description, parents=parents
        )
        # ui alone opens the latest study; report compares several
        arity = {"ui": "?", "report": "+"}.get(name)
        parsers[name].add_argument("study", nargs=arity, help=study_help)
        parsers[name].set_defaults(func=funcs[name])
    ui, report = parsers["ui"], parsers["report"]
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    report.add_argument(
        "--importance",
        default="fanova",
        choices=("fanova", "mdi", "ped-anova"),
        help="Optuna importance evaluator (default: fanova)",
    )
    report.add_argument("--no-mlflow", action="store_true", help="read and log nothing in MLflow")


def cmd_report(args: argparse.Namespace) -> int:
    from ablate.errors import UnknownStudy, local_studies

    for name in args.study:  # every study is checked before any is analysed
        if "://" in name or Path(name).is_dir() or (args.results_dir / name).is_dir():
            continue
        raise UnknownStudy(
            f"no study {name!r} in {args.results_dir}",
            local_studies(args.results_dir),
            "there",
        )
    from ablate.report import cmd_compare, cmd_report

    return cmd_report(args) if len(args.study) == 1 else cmd_compare(args)


def cmd_sync(args: argparse.Namespace) -> int:
    from ablate.search.delivery import sync

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
