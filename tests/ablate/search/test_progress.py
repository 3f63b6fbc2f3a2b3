"""What the driver does as each trial ends: it says how it ended, its seed mean, and the best
trial so far by ablate's names and rule (completed trials only), in the spirit of Optuna's log
line; and it closes the runs of a stopped trial off Tune's event loop."""

from __future__ import annotations

import logging
import pickle
from types import SimpleNamespace

import pytest

from ablate.search.tuning import StatusCallback


class _NoRuns:
    def runs_of_trial(self, trial_id: str) -> list:
        return []


class _Trial(SimpleNamespace):
    def __str__(self) -> str:  # Tune's Trial prints as its name
        return self.name


def _trial(name: str, epoch: int, value: float | None) -> _Trial:
    result = {"epoch": epoch} | ({} if value is None else {"val/hm": value})
    return _Trial(name=name, trial_id=f"id-{name}", last_result=result, error_file="")


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ablate"]


def test_each_ended_trial_is_told_with_the_best_completed_so_far(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ablate")
    guard = StatusCallback(
        _NoRuns(), epochs=3, fail_limit=3, study_dir=tmp_path, objective=("val/hm", "max")
    )  # type: ignore[arg-type]
    a, b, c = _trial("t000", 3, 61.234), _trial("t001", 1, 90.0), _trial("t002", 3, 70.5)
    guard.on_trial_complete(0, [a], a)
    guard.on_trial_complete(0, [a, b], b)  # pruned: however high, not the best
    guard.on_trial_complete(0, [a, b, c], c)
    guard.on_trial_error(0, [a, b, c], _trial("t003", 2, 99.0))
    assert _lines(caplog) == [
        "ablate: t000 completed with val/hm = 61.23; best is t000 with 61.23",
        "ablate: t001 pruned after epoch 1 with val/hm = 90.00; best is t000 with 61.23",
        "ablate: t002 completed with val/hm = 70.50; best is t002 with 70.50",
        "ablate: t003 failed; best is t002 with 70.50",
    ]


def test_a_restored_trial_counts_and_a_minimised_metric_is_ranked_low_first(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ablate")
    guard = StatusCallback(_NoRuns(), 2, 3, study_dir=tmp_path, objective=("val/hm", "min"))  # type: ignore[arg-type]
    before = _trial("t000", 2, 1.5)  # completed before the study was interrupted and resumed
    now = _trial("t001", 2, 2.5)
    guard.on_trial_complete(0, [before, now], now)
    assert _lines(caplog) == ["ablate: t001 completed with val/hm = 2.50; best is t000 with 1.50"]


def test_several_objectives_tell_only_how_the_trial_ended(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ablate")
    guard = StatusCallback(_NoRuns(), 2, 3, study_dir=tmp_path)  # type: ignore[arg-type]
    t = _trial("t000", 2, 50.0)
    guard.on_trial_complete(0, [t], t)
    assert _lines(caplog) == ["ablate: t000 completed"]


def test_a_pruned_trials_runs_are_closed_off_the_event_loop_and_settled(tmp_path):
    from ablate.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").start_study("s", "", {}, {})
    parent = tracker.parent_run_id
    tags = {"ablate.trial_id": "id-t000"}
    trial_run = tracker.start_run(parent, "t000", "trial", {}, tags)
    seed_run = tracker.start_run(trial_run, "t000 seed=1", "seed", {}, tags)
    guard = StatusCallback(tracker, epochs=3, fail_limit=3, study_dir=tmp_path)
    t = _trial("t000", 1, 40.0)
    guard.on_trial_complete(0, [t], t)
    guard.settle()  # what the driver waits for before it closes what is left RUNNING
    for run_id in (trial_run, seed_run):
        run = tracker.client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["ablate.status"] == "pruned"
        assert run.data.tags["ablate.stopped_epoch"] == "1"
    assert pickle.loads(pickle.dumps(guard)).statuses == {"id-t000": "pruned"}  # as Tune keeps it
