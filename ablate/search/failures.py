"""A trial's own failures, counted across restarts in the study folder (Ray-free).

Ray Tune retries every failure of a trial alike (`FailureConfig.max_failures`), a lost node as
much as an exception of the trial's own, and decides before any callback sees the error. So the
trial counts its own failures here, in `<study>/failures/<trial id>.txt` (one error line each;
on shared storage for a cluster): within the study's `retries` it raises and Tune restarts it
from its last checkpoint; past them it ends without raising, and the driver reads from here that
it failed. Tune's own budget is then left to lost workers and nodes (`LOST_WORKERS`).
"""

from __future__ import annotations

from ablate import results

FOLDER = "failures"
LOST_WORKERS = 3  # per trial: lost Ray workers or nodes a trial survives, on top of `retries`


def record(study_dir: results.Location, trial_id: str, error: str) -> int:
    """Add one own failure of the trial; how many it has had now."""
    folder = results.join(study_dir, FOLDER)
    lines = errors(study_dir, trial_id) + [" ".join(error.split())[:2000]]
    results.write_text(folder, f"{trial_id}.txt", "\n".join(lines) + "\n")
    return len(lines)


def errors(study_dir: results.Location, trial_id: str) -> list[str]:
    """The trial's own failures so far, oldest first."""
    text = results.read_text(results.join(study_dir, FOLDER), f"{trial_id}.txt")
    return [line for line in (text or "").splitlines() if line]


def gave_up(study_dir: results.Location, trial_id: str, retries: int) -> str | None:
    """The error a trial ended with after its `retries`, or None when it did not fail so."""
    mine = errors(study_dir, trial_id)
    return mine[-1] if len(mine) > retries else None
