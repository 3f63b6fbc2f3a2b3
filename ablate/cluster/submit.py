"""`ablate submit`: a study on a Ray cluster as a Ray job (Ray Tune lives in ablate.search.tuning).

`ablate submit` validates the file here, checks the cluster's address and token, the MLflow
tracking server and the storage, then submits `python -m ablate.cli search FILE ... --address
auto --tracking-uri URI --storage LOCATION` as the job's entrypoint, with the working directory
and the ablate code in its runtime_env. The driver runs on the head node, the trials on every
node, and the same `ablate search` checks the storage and MLflow again from every node before
the first trial.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ablate import results, tracking
from ablate.cluster.access import DEFAULT_ADDRESS, is_loopback, resolve_address
from ablate.cluster.jobs import DONE, STUDY_KEY, connect, follow_logs
from ablate.errors import ConfigError
from ablate.spec import StudySpec

ENTRYPOINT = ["python", "-m", "ablate.cli", "search"]  # works with only the uploaded code, too
EXCLUDES = [  # never uploaded with the working directory (Ray also honours .gitignore)
    ".git/",
    ".venv/",
    "venv/",
    "results/",
    "mlruns/",
    "mlartifacts/",
    "mlflow.db",
    "*.parquet",
    "__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    "build/",
    "dist/",
]
ENV_VARS = {  # `ablate stop` -> SIGINT: Tune saves the experiment, ablate marks it interrupted
    "RAY_JOB_STOP_SIGNAL": "SIGINT",
    "RAY_JOB_STOP_WAIT_TIME_S": "60",
    "RAY_DEDUP_LOGS": "0",
}


# ---- the job ------------------------------------------------------------------------------------
@dataclass
class Submission:
    file: Path
    overrides: list[str]
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    working_dir: Path | None = None
    pip: str | None = None  # None | "project" | a requirements file
    system_metrics: bool = False
    verbosity: int = 0  # -1 = -q, 1 = -v: passed on to the job's `ablate search`


def submit(spec: StudySpec, sub: Submission, follow: bool = False) -> int:
    """Check everything a job needs that can be checked from here, then submit it."""
    address = resolve_address(sub.address)
    local = is_loopback(address)
    root = (sub.working_dir or Path.cwd()).resolve()
    file = sub.file.resolve()
    if not file.is_relative_to(root):
        raise ConfigError(
            f"{sub.file} is outside the working directory {root}, which is what the job "
            "uploads; run from the folder that holds it, or pass --working-dir"
        )
    here = Path.cwd()  # relative local paths mean what they mean for `ablate search`
    uri = _tracking_uri(sub.tracking_uri, local, here)
    storage = _storage(sub.storage, local, here)
    jobs = connect(address)
    with jobs.call():
        running = [
            j
            for j in jobs.client.list_jobs()
            if (j.metadata or {}).get(STUDY_KEY) == spec.name and str(j.status) not in DONE
        ]
    if running:
        raise ConfigError(
            f"study {spec.name!r} already runs on {address} as job {running[0].submission_id} "
            f"({running[0].status}); `ablate stop {spec.name}` first, or change `name`"
        )
    entrypoint = [*ENTRYPOINT, file.relative_to(root).as_posix(), *sub.overrides]
    entrypoint += ["--address", "auto", "--tracking-uri", uri, "--storage", storage]
    entrypoint += ["--system-metrics"] if sub.system_metrics else []
    entrypoint += {-1: ["-q"], 1: ["-v"]}.get(sub.verbosity, [])
    submission_id = f"ablate-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with jobs.call():
        job_id = jobs.client.submit_job(
            entrypoint=shlex.join(entrypoint),
            submission_id=submission_id,
            runtime_env=runtime_env(root, sub.pip),
            metadata={STUDY_KEY: spec.name, "ablate_file": file.relative_to(root).as_posix()},
        )
    print(f"ablate: submitted study {spec.name!r} to {address} as job {job_id}")
    print(f"ablate: results in {results.study_location(storage, spec.name)}, MLflow at {uri}")
    flag = "" if address == DEFAULT_ADDRESS else f" --address {address}"
    print(f"    watch: ablate logs {spec.name} --follow{flag}   (or {address}/#/jobs/{job_id})")
    print(f"    stop:  ablate stop {spec.name}{flag}", flush=True)
    if follow:
        return follow_logs(jobs, job_id)
    return 0


def runtime_env(root: Path, pip: str | None) -> dict[str, Any]:
    """The job's runtime_env: the working directory, the ablate code when it is not inside it,
    the stop signal, and (opt-in) pip packages."""
    env: dict[str, Any] = {"working_dir": str(root), "excludes": EXCLUDES, "env_vars": ENV_VARS}
    modules = []
    for name in ("ablate", "trainers"):
        package = Path(sys.modules[name].__file__ or "").parent if name in sys.modules else None
        if package is None:
            package = Path(__import__(name).__file__ or "").parent
        if not package.resolve().is_relative_to(root):
            modules.append(str(package.resolve()))
    if modules:
        env["py_modules"] = modules
    if pip == "project":
        env["pip"] = project_requirements()
    elif pip:
        path = Path(pip)
        if not path.is_file():
            raise ConfigError(f"--pip {pip}: no such requirements file")
        env["pip"] = [
            line.strip()
            for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return env


def project_requirements() -> list[str]:
    """ablate's own dependencies (pyproject.toml, as installed), without the extras."""
    return [r for r in metadata.requires("ablate") or [] if "extra ==" not in r]


def _tracking_uri(given: str | None, local: bool, here: Path) -> str:
    uri = given or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        if not local:
            raise ConfigError(
                "a study on a remote cluster needs an MLflow tracking server every node "
                "reaches: pass --tracking-uri http://HOST:5000 (recipe: cluster/mlflow/)"
            )
        uri = f"sqlite:///{here / 'mlflow.db'}"
    if tracking.is_local_store(uri) and not local:
        raise ConfigError(
            f"--tracking-uri {uri} is a file-based MLflow store: on a remote cluster it would be "
            "a different file on every node. Use a tracking server (http://HOST:5000; recipe: "
            "cluster/mlflow/)"
        )
    if tracking.is_local_store(uri) and uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        uri = f"sqlite:///{path if path.is_absolute() else (here / path).resolve()}"
    problem = tracking.check_reachable(uri)
    if problem:
        raise ConfigError(f"the MLflow tracking store {uri} does not answer: {problem}")
    return uri


def _storage(given: str | None, local: bool, here: Path) -> str:
    if not given:
        if not local:
            raise ConfigError(
                "a study on a remote cluster needs --storage that every node shares: a folder "
                "mounted at the same path on every node (NFS), or an object store URI "
                "(s3://bucket/prefix, gs://bucket/prefix); the results table, study.json and "
                "Ray's checkpoints go there"
            )
        given = str(here / "results")
    if results.is_uri(given):
        problem = results.probe(given)  # object stores: this machine usually has access too
        if problem:
            raise ConfigError(f"--storage {given}: {problem}")
        return given
    path = Path(given).expanduser()
    if not path.is_absolute():
        if not local:
            raise ConfigError(f"--storage {given}: give an absolute path (as the nodes see it)")
        path = (here / path).resolve()
    if local or path.exists():  # a remote cluster's NFS path may not be mounted here
        problem = results.probe(path)
        if problem:
            raise ConfigError(f"--storage {given}: {problem}")
    return str(path)
