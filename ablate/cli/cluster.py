"""Commands for a study on a Ray cluster: `ablate submit` (the study as a Ray job) and
`ablate status | logs | stop` (its job, found by the study's name). Ray loads only inside them."""

from __future__ import annotations

import argparse
from pathlib import Path

from ablate.cli.parser import Commands, output_options, tracking_option

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

JOB_COMMANDS = {  # name: (help, description, example); each finds a job by study name or id
    "status": (
        "status of studies submitted to a Ray cluster",
        "Without JOB: every study job on the cluster, newest first. With a study name: its "
        "latest job; or a job id.",
        "ablate status quickstart --address http://HEAD:8265",
    ),
    "logs": (
        "logs of a submitted study",
        "The driver's output of a study's latest job (or a job id): the plan, Ray Tune's trial "
        "table, the summary.",
        "ablate logs quickstart --follow --address http://HEAD:8265",
    ),
    "stop": (
        "stop a submitted study",
        "Stop a study's running job (or a job id). The driver gets SIGINT and records the "
        "study as interrupted; submit the same file again to resume it.",
        "ablate stop quickstart --address http://HEAD:8265",
    ),
}

ADDRESS_HELP = (
    "the cluster's dashboard (Jobs API), http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
    "else $RAY_ADDRESS, else http://127.0.0.1:8265)"
)


def add_parsers(commands: Commands) -> None:
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument("--address", help=ADDRESS_HELP)

    submit = commands.add_parser(
        "submit",
        help="run a study on a Ray cluster as a Ray job",
        description=SUBMIT_HELP,
        epilog=SUBMIT_EPILOG,
        parents=[address, tracking_option(), output_options()],
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

    parsers = {}
    for name, (summary, description, example) in JOB_COMMANDS.items():
        parsers[name] = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=f"example:\n  {example}",
            parents=[address],
        )
        optional = "?" if name == "status" else None  # status alone lists every study's job
        parsers[name].add_argument(
            "job", nargs=optional, metavar="JOB", help="study name or job id"
        )
        parsers[name].set_defaults(func=cmd_job)
    parsers["logs"].add_argument(
        "--follow", "-f", action="store_true", help="stream until the job ends"
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from ablate.cluster import submit
    from ablate.spec import load

    spec = load(args.file, args.overrides)  # invalid: exit 2, nothing submitted
    return submit.submit(
        spec,
        submit.Submission(
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


def cmd_job(args: argparse.Namespace) -> int:
    """`ablate status | logs | stop`: the Jobs API call of the same name."""
    from ablate.cluster import jobs

    if args.command == "logs":
        return jobs.logs(args.address, args.job, follow=args.follow)
    return {"status": jobs.status, "stop": jobs.stop}[args.command](args.address, args.job)
