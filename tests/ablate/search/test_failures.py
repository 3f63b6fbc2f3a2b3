"""A trial's own failures, counted across restarts in the study folder (ablate.search.failures)."""

from __future__ import annotations

from ablate.search import failures


def test_own_failures_are_counted_and_the_last_one_is_what_the_trial_gave_up_with(tmp_path):
    assert failures.errors(tmp_path, "a1") == [] and failures.gave_up(tmp_path, "a1", 0) is None
    assert failures.record(tmp_path, "a1", "ValueError: first\n  (on two lines)") == 1
    assert failures.gave_up(tmp_path, "a1", retries=1) is None  # one retry left
    assert failures.record(tmp_path, "a1", "ValueError: second") == 2
    assert failures.errors(tmp_path, "a1") == [
        "ValueError: first (on two lines)",
        "ValueError: second",
    ]
    assert failures.gave_up(tmp_path, "a1", retries=1) == "ValueError: second"
    assert failures.errors(tmp_path, "b2") == []  # per trial


def test_failures_go_to_an_object_store_uri_as_well(tmp_path):
    uri = f"file://{tmp_path}/store/study"
    failures.record(uri, "a1", "RuntimeError: boom")
    assert failures.gave_up(uri, "a1", 0) == "RuntimeError: boom"
    assert (tmp_path / "store/study/failures/a1.txt").is_file()


class _NoRuns:
    """A tracker with no MLflow runs (the statuses, not the runs, are under test here)."""

    def runs_of_trial(self, trial_id: str) -> list:
        return []


def _trial(trial_id: str, epoch: int, error_file: str = "") -> object:
    from types import SimpleNamespace

    return SimpleNamespace(
        trial_id=trial_id, last_result={"training_iteration": epoch}, error_file=error_file
    )


def test_the_driver_tells_own_failures_from_lost_workers(tmp_path, caplog):
    from ablate.search.tuning import StatusCallback

    guard = StatusCallback(_NoRuns(), epochs=4, fail_limit=3, study_dir=tmp_path, retries=1)  # type: ignore[arg-type]
    lost = tmp_path / "error.txt"
    lost.write_text("Failure # 1\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    guard.on_trial_recover(0, [], _trial("a1", 2, str(lost)))
    assert "lost its Ray worker (ray.exceptions.ActorDiedError" in caplog.text
    assert "resumes after epoch 2" in caplog.text and "costs no retry" in caplog.text

    failures.record(tmp_path, "a1", "ValueError: boom")
    guard.on_trial_recover(0, [], _trial("a1", 3))
    assert "retry 1 of 1, after epoch 3" in caplog.text

    guard.on_trial_complete(0, [], _trial("a1", 4))  # finished within its retry
    failures.record(tmp_path, "b2", "ValueError: boom")
    failures.record(tmp_path, "b2", "ValueError: boom again")
    guard.on_trial_complete(0, [], _trial("b2", 3))  # gave up after its retry
    guard.on_trial_complete(0, [], _trial("c3", 2))
    assert guard.statuses == {"a1": "completed", "b2": "failed", "c3": "pruned"}
