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
