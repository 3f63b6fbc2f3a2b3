"""`ablate sync` after an outage: the spool delivered, then the runs the driver could not close
while MLflow was away closed with their trials' statuses from the results table."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from ablate import results
from ablate.search import delivery
from ablate.search.ownership import OWNER_FILE, Owner
from ablate.search.resume import StudyState
from ablate.tracking import Tracker, spool


def _study(tmp_path: Path) -> tuple[Path, Tracker, dict[str, str]]:
    """A study whose trial `a` was pruned and `b` killed while MLflow was unreachable: their
    runs are RUNNING, their rows say how they ended, and one call waits in the spool."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri).start_study("s", "", {}, {})
    study_dir = tmp_path / "results/s"
    study_dir.mkdir(parents=True)
    StudyState("sha", uri, tracker.experiment_id, tracker.parent_run_id, "", "finished").save(
        study_dir
    )
    runs = {}
    for trial, status in (("a", "pruned"), ("b", "running")):
        tags = {"ablate.trial_id": trial, "ablate.trial_key": trial}
        runs[trial] = tracker.start_run(tracker.parent_run_id, trial, "trial", {}, tags)
        row = {"study": "s", "trial_id": trial, "trial_key": trial, "seed": 1, "epoch": 1}
        results.write_part([row | {"status": status}], study_dir, trial)
    waiting = Tracker(uri, tracker.experiment_id, tracker.parent_run_id, str(study_dir / "spool"))
    spool.write(waiting, "set_tags", (runs["a"], {"note": "spooled"}), {})
    (study_dir / "spool").rename(study_dir / delivery.SPOOL_DIR)
    return study_dir, tracker, runs


def test_sync_closes_what_the_outage_left_running_with_the_trials_statuses(tmp_path, capsys):
    study_dir, tracker, runs = _study(tmp_path)
    assert delivery.sync(study_dir, None) == 0
    client = MlflowClient(tracker.uri)
    pruned, killed = (client.get_run(runs[t]) for t in ("a", "b"))
    assert pruned.data.tags["note"] == "spooled"  # delivered first
    assert pruned.info.status == "FINISHED" and pruned.data.tags["ablate.status"] == "pruned"
    assert killed.info.status == "KILLED" and killed.data.tags["ablate.status"] == "killed"
    assert "closed 2 runs left RUNNING" in capsys.readouterr().out


def test_sync_leaves_the_runs_of_a_study_that_still_runs_alone(tmp_path):
    study_dir, tracker, runs = _study(tmp_path)
    (study_dir / OWNER_FILE).write_text(json.dumps(Owner.me().__dict__))  # a live owner
    assert delivery.sync(study_dir, None) == 0
    client = MlflowClient(tracker.uri)
    assert {client.get_run(r).info.status for r in runs.values()} == {"RUNNING"}
