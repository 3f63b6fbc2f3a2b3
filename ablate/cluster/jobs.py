"""Ray's Jobs API (status, logs, stop; the client `submit` uses): a study on a Ray cluster is a
Ray job, found by the `ablate_study` entry of its metadata, so the study's name is enough. The
address and the token are found as Ray finds them (`ablate.cluster.access`); the token is always
sent as a bearer header.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.cluster.access import (
    DEFAULT_ADDRESS,
    TOKEN_HELP,
    ClusterAuthError,
    ClusterError,
    ClusterUnreachable,
    check_address,
    read_token,
    resolve_address,
)
from ablate.errors import AblateError, UnknownStudy, local_studies

STUDY_KEY = "ablate_study"  # job metadata: the study's name
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
        return follow_logs(jobs, job.submission_id)
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


def follow_logs(jobs: Jobs, job_id: str) -> int:
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
