"""What waited for an unreachable MLflow, delivered: at the end of a study (`settle_tracking`,
then the runs left RUNNING closed) and whenever the server is back (`ablate sync`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ablate import results, tracking
from ablate.errors import UnknownStudy, local_studies
from ablate.search.ownership import read_owner
from ablate.search.resume import StudyState, load_state
from ablate.tracking.spool import replay, stop_spooling

SPOOL_DIR = "mlflow-spool"  # tracking calls waiting for an unreachable MLflow (`ablate sync`)
log = logging.getLogger("ablate")


def spool_dir(study_dir: results.Location) -> str:
    """Where tracking calls wait for an unreachable MLflow: in the study folder, or, when that
    is an object store, in ./results/<study>/ on the driver's disk."""
    if results.is_uri(study_dir):
        return str((Path("results") / Path(str(study_dir)).name / SPOOL_DIR).resolve())
    return str(Path(study_dir) / SPOOL_DIR)


def settle_tracking(
    tracker: tracking.Tracker, statuses: dict[str, str], study_dir: results.Location
) -> None:
    """Deliver what waited for an unreachable MLflow, then close runs left RUNNING."""
    spool = Path(tracker.spool_dir)
    stop_spooling(spool)  # the driver tries the server again
    if spool.exists():
        delivered, waiting = replay(spool, tracker.uri, tracking.Tracker)
        if waiting:
            log.warning(
                f"ablate: {waiting} MLflow calls wait in {spool} (the tracking server is "
                f"unreachable); run `ablate sync {Path(str(study_dir)).name}` when it is back."
            )
            if results.is_uri(study_dir):  # an object store takes no appends: spools stay local
                log.warning(
                    "ablate: trials on other nodes spooled at the same path on their own disk; "
                    "run `ablate sync` on each of them too."
                )
        elif delivered:
            log.info(f"ablate: delivered {delivered} MLflow calls that waited for the server.")
    try:
        tracker.close_orphans(statuses)
    except Exception as err:
        log.warning(
            f"ablate: could not close unfinished MLflow runs ({err}); `ablate sync` retries"
        )


def sync(study_dir: Path, tracking_uri: str | None) -> int:
    """`ablate sync`: deliver the tracking calls a study spooled while MLflow was unreachable."""
    if not study_dir.is_dir():
        raise UnknownStudy(
            f"no study {study_dir.name!r} in {study_dir.parent}",
            local_studies(study_dir.parent),
            "there",
            "ablate sync STUDY delivers what a study run here spooled (--results-dir: elsewhere)",
        )
    state = load_state(study_dir)
    uri = tracking_uri or (state.tracking_uri if state else tracking.default_tracking_uri())
    spool = study_dir / SPOOL_DIR
    if not spool.exists() or not any(spool.glob("*.jsonl")):
        print(f"ablate: nothing waits in {spool}; MLflow has everything.")
        return 0
    delivered, waiting = replay(spool, uri, tracking.Tracker)
    print(f"ablate: delivered {delivered} MLflow calls to {uri}; {waiting} still waiting.")
    if waiting == 0 and state is not None:
        _close_left_running(study_dir, state, uri)
    return 0 if waiting == 0 else 1


def _close_left_running(study_dir: Path, state: StudyState, uri: str) -> None:
    """The runs the driver could not close while MLflow was unreachable (a stopped trial's, a
    killed one's), closed with their trials' final statuses from the results table; not while
    an `ablate search` still runs the study (it closes them itself)."""
    owner = read_owner(study_dir)
    if owner is not None and owner.stale_reason() is None:
        return
    statuses = {row["trial_id"]: row["status"] for row in results.rows(study_dir)}
    tracker = tracking.Tracker(uri, state.experiment_id, state.parent_run_id)
    closed = tracker.close_orphans(statuses)
    if closed:
        print(f"ablate: closed {closed} runs left RUNNING, with their trials' statuses.")
