"""Ray's Jobs API lives here (Ray Tune lives in study.py): a study on a Ray cluster as a Ray job.

`ablate submit` validates the file here, checks the cluster's address and token, the MLflow
tracking server and the storage, then submits `python -m ablate.cli search FILE ... --address
auto --tracking-uri URI --storage LOCATION` as the job's entrypoint, with the working directory
and the ablate code in its runtime_env. The driver runs on the head node, the trials on every
node, and the same `ablate search` checks the storage and MLflow again from every node before
the first trial. `status`, `logs` and `stop` find a study's latest job by the `ablate_study`
entry of the job's metadata, so the study's name is enough. The address and the token are
found as Ray finds them (`ablate.cluster_access`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ablate import results, tracking
from ablate.cluster_access import (
    DEFAULT_ADDRESS,
    TOKEN_HELP,
    ClusterAuthError,
    ClusterError,
    ClusterUnreachable,
    check_address,
    is_loopback,
    read_token,
    resolve_address,
)
from ablate.errors import AblateError, ConfigError, UnknownStudy, local_studies
from ablate.spec import StudySpec

STUDY_KEY = "ablate_study"  # job metadata: the study's name
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
DONE = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class Jobs:
    """A JobSubmissionClient with the token, and errors translated into ablate's."""

    address: str
    token: str | None
    source: str
    client: Any

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        try:
            yield
        except AblateError:
            raise
        except Exception as err:
            raise self._translate(err) from err

    def _translate(self, err: Exception) -> AblateError:
        text = str(err)
        if type(err).__name__ == "AuthenticationError" or "Unauthorized" in text:
            if "Forbidden" in text or ("Authentication failed" in text and self.token):
                return ClusterAuthError(
                    f"the Ray cluster at {self.address} rejected the token from {self.source}: "
                    f"it is not this cluster's token. {TOKEN_HELP}"
                )
            if self.token:
                return ClusterAuthError(
                    f"the Ray cluster at {self.address} did not accept the token from "
                    f"{self.source}. {TOKEN_HELP}"
                )
            return ClusterAuthError(
                f"the Ray cluster at {self.address} requires an authentication token, and "
                f"none was found. {TOKEN_HELP}"
            )
        if isinstance(err, ConnectionError) or "Connection" in type(err).__name__:
            return ClusterError(f"lost the Ray dashboard at {self.address}: {err}")
        return ClusterError(f"the Jobs API at {self.address} failed: {type(err).__name__}: {err}")


def connect(address: str | None) -> Jobs:
    given = address
    address = resolve_address(address)
    token, source = read_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        check_address(address, headers)
    except ClusterUnreachable as err:
        if given or address != DEFAULT_ADDRESS:
            raise
        raise no_cluster_here() from err
    from ray.job_submission import JobSubmissionClient

    jobs = Jobs(address, token, source, None)
    with jobs.call():
        jobs.client = JobSubmissionClient(address, headers=headers)
        jobs.client.list_jobs()  # the token is checked here, not by /api/version
    return jobs


def no_cluster_here(results_dir: Path = Path("results")) -> UnknownStudy:
    """No address was given and no Ray cluster runs on this machine (a laptop): say where the
    cluster commands look, and which studies `ablate search` ran here."""
    return UnknownStudy(
        f"no Ray cluster answers at {DEFAULT_ADDRESS} (the default; --address or "
        "$RAY_API_SERVER_ADDRESS name another)",
        local_studies(results_dir),
        f"run here by `ablate search` (in ./{results_dir})",
        "status, logs and stop follow studies submitted with `ablate submit`; a study run "
        "here is reviewed with `ablate report STUDY` or `ablate ui STUDY`",
    )


# ---- submit ------------------------------------------------------------------------------------
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
        return _follow(jobs, job_id)
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


# ---- status, logs, stop -----------------------------------------------------------------------
def find_job(jobs: Jobs, ref: str) -> Any:
    """The job whose submission id is `ref`, else the latest job of the study named `ref`."""
    with jobs.call():
        listed = jobs.client.list_jobs()
    for job in listed:
        if ref in (job.submission_id, job.job_id):
            return job
    mine = [j for j in listed if (j.metadata or {}).get(STUDY_KEY) == ref]
    if not mine:
        studies = {(j.metadata or {}).get(STUDY_KEY) for j in listed} - {None}
        raise UnknownStudy(
            f"no job of study {ref!r} (and no job with that id) on {jobs.address}",
            sorted(studies),
            "with jobs there",
            "`ablate status` lists their jobs",
        )
    return max(mine, key=lambda j: j.start_time or 0)


def describe(job: Any, address: str) -> str:
    started = _clock(job.start_time)
    ended = f", ended {_clock(job.end_time)}" if job.end_time else ""
    took = ((job.end_time or time.time() * 1000) - (job.start_time or 0)) / 60000
    study = (job.metadata or {}).get(STUDY_KEY, "?")
    lines = [
        f"{job.submission_id}  study {study}  {job.status}  started {started}{ended} "
        f"({took:.1f} min)",
    ]
    if job.message:
        lines.append(f"    {job.message.strip().splitlines()[0][:300]}")
    lines.append(f"    dashboard: {address}/#/jobs/{job.submission_id}")
    return "\n".join(lines)


def _clock(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def status(address: str | None, ref: str | None) -> int:
    jobs = connect(address)
    if ref:
        print(describe(find_job(jobs, ref), jobs.address))
        return 0
    with jobs.call():
        mine = [j for j in jobs.client.list_jobs() if STUDY_KEY in (j.metadata or {})]
    if not mine:
        print(f"ablate: no study jobs on {jobs.address}; `ablate submit FILE` starts one")
        return 0
    for job in sorted(mine, key=lambda j: j.start_time or 0, reverse=True):
        print(describe(job, jobs.address))
    return 0


def logs(address: str | None, ref: str, follow: bool = False) -> int:
    jobs = connect(address)
    job = find_job(jobs, ref)
    if follow:
        return _follow(jobs, job.submission_id)
    with jobs.call():
        print(jobs.client.get_job_logs(job.submission_id), end="")
    return 0


def stop(address: str | None, ref: str) -> int:
    jobs = connect(address)
    job = find_job(jobs, ref)
    if str(job.status) in DONE:
        print(f"ablate: job {job.submission_id} already ended ({job.status})")
        return 0
    with jobs.call():
        jobs.client.stop_job(job.submission_id)
    print(
        f"ablate: stopping job {job.submission_id}; the study is recorded as interrupted. "
        "Submit the same file again to resume it."
    )
    return 0


def _follow(jobs: Jobs, job_id: str) -> int:
    """Stream the job's logs until it ends; exit 0 when it succeeded, else 1."""

    async def tail() -> None:
        async for lines in jobs.client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        with jobs.call():
            asyncio.run(tail())
    except KeyboardInterrupt:
        print(f"\nablate: stopped following; job {job_id} goes on (`ablate stop` ends it)")
        return 130
    with jobs.call():
        for _ in range(60):  # the log stream can close a moment before the status is final
            final = jobs.client.get_job_status(job_id)
            if str(final) in DONE:
                break
            time.sleep(1)
        info = jobs.client.get_job_info(job_id)
    print(f"ablate: job {job_id} {final}" + (f": {info.message}" if info.message else ""))
    return 0 if str(final) == "SUCCEEDED" else 1
