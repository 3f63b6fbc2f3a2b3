"""The spool: a trial goes on while MLflow is unreachable, its runs created meanwhile included,
and a replay delivers everything to the right runs, once, in order, across processes' files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ablate.tracking import Tracker, is_stand_in, retry, spool

ROLE, KEY, SEED = "ablate.role", "ablate.trial_key", "ablate.seed"


@pytest.fixture
def store(tmp_path: Path) -> Tracker:
    """A reachable SQLite store with a study's experiment and parent run."""
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").start_study("s", "", {}, {})


@pytest.fixture
def down(store: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tracker:
    """The same study seen from a worker whose tracking server is unreachable."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(retry.time, "sleep", lambda _: None)
    monkeypatch.setattr(spool, "_SPOOLING", set())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    return Tracker(uri, store.experiment_id, store.parent_run_id, str(tmp_path / "spool"))


def _trial(tracker: Tracker, key: str = "k1", epochs: int = 2) -> tuple[str, str]:
    """What a trial sends: its run, a seed run under it, metrics per epoch, the end."""
    found = tracker.runs_of_config(key)
    assert found is None  # unknown while unreachable: the replay looks for earlier runs
    parent = tracker.parent_run_id
    trial = tracker.start_run(parent, "t000", "trial", {"lr": 0.1}, {KEY: key})
    seed = tracker.start_run(trial, "t000 seed=1", "seed", {"seed": 1}, {KEY: key, SEED: "1"})
    for epoch in range(1, epochs + 1):
        tracker.log_metrics(seed, {"val/hm": 10.0 * epoch}, epoch, timestamp=1000 + epoch)
        tracker.log_metrics(trial, {"val/hm": 10.0 * epoch}, epoch, timestamp=1000 + epoch)
    tracker.log_text(trial, "lr: 0.1\n", "config.yaml")
    for run_id in (trial, seed):
        tracker.finish_run(run_id, "completed")
    return trial, seed


def _runs(store: Tracker, role: str) -> list:
    return MlflowClient(store.uri).search_runs(
        [store.experiment_id], f"tags.`{ROLE}` = '{role}'", max_results=100
    )


def _assert_delivered(store: Tracker, key: str = "k1", epochs: int = 2) -> None:
    client = MlflowClient(store.uri)
    (trial,), (seed,) = _runs(store, "trial"), _runs(store, "seed")
    assert trial.data.tags["mlflow.parentRunId"] == store.parent_run_id
    assert seed.data.tags["mlflow.parentRunId"] == trial.info.run_id
    assert trial.data.tags[KEY] == seed.data.tags[KEY] == key
    assert trial.data.params == {"lr": "0.1"} and seed.data.params == {"seed": "1"}
    for run in (trial, seed):
        assert run.info.status == "FINISHED" and run.data.tags["ablate.status"] == "completed"
        history = client.get_metric_history(run.info.run_id, "val/hm")
        assert sorted((m.step, m.value) for m in history) == [
            (e, 10.0 * e) for e in range(1, epochs + 1)
        ]


def test_a_trial_started_while_mlflow_is_unreachable_goes_on_and_is_delivered(store, down):
    trial, seed = _trial(down)
    assert is_stand_in(trial) and is_stand_in(seed) and trial != seed
    assert _runs(store, "trial") == []
    delivered, waiting = spool.replay(Path(down.spool_dir), store.uri, Tracker)
    assert waiting == 0 and delivered > 0
    _assert_delivered(store)
    assert not list(Path(down.spool_dir).glob("*.jsonl"))


def test_a_replay_cut_short_and_run_again_creates_no_run_twice(store, down):
    _trial(down)
    (path,) = Path(down.spool_dir).glob("*.jsonl")
    text = path.read_text()
    spool.replay(Path(down.spool_dir), store.uri, Tracker)
    path.write_text(text)  # as if killed after delivering, before the file was removed
    assert spool.replay(Path(down.spool_dir), store.uri, Tracker)[1] == 0
    _assert_delivered(store)


def test_a_call_naming_a_run_another_process_creates_waits_for_it(store, down, monkeypatch):
    monkeypatch.setattr(spool, "SPOOL_FILE", "a.jsonl")
    trial, seed = _trial(down, epochs=1)
    # another process resumes the trial (MLflow is back for it, but the runs are not yet)
    monkeypatch.setattr(spool, "SPOOL_FILE", "b.jsonl")
    monkeypatch.setattr(spool, "_SPOOLING", set())
    resumed = Tracker(store.uri, store.experiment_id, store.parent_run_id, down.spool_dir)
    resumed.reopen(seed)
    resumed.log_metrics(seed, {"val/hm": 20.0}, 2, timestamp=1002)
    resumed.log_metrics(trial, {"val/hm": 20.0}, 2, timestamp=1002)
    resumed.finish_run(trial, "completed")
    resumed.finish_run(seed, "completed")
    folder = Path(down.spool_dir)
    os.utime(folder / "b.jsonl", (1, 1))  # the older file: replayed first, it must wait
    assert spool.replay(folder, store.uri, Tracker)[1] == 0
    _assert_delivered(store, epochs=2)


def test_an_earlier_invocations_runs_of_the_configuration_are_taken_over(store, down):
    parent = store.parent_run_id
    earlier = store.start_run(parent, "t009", "trial", {"lr": 0.1}, {KEY: "k1"})
    store.finish_run(earlier, "killed")
    _trial(down)
    assert spool.replay(Path(down.spool_dir), store.uri, Tracker)[1] == 0
    (trial,) = _runs(store, "trial")
    assert trial.info.run_id == earlier
    _assert_delivered(store)


def test_calls_that_fail_again_wait_for_the_next_replay(store, down):
    _trial(down)
    folder = Path(down.spool_dir)
    lines = sum(len(p.read_text().splitlines()) for p in folder.glob("*.jsonl"))
    assert spool.replay(folder, down.uri, Tracker) == (0, lines)  # still unreachable
    assert spool.replay(folder, store.uri, Tracker) == (lines, 0)
    _assert_delivered(store)


def test_without_a_spool_folder_an_unreachable_mlflow_raises(down):
    unspooled = Tracker(down.uri, down.experiment_id, down.parent_run_id)
    with pytest.raises(Exception, match="127.0.0.1"):
        unspooled.start_run(down.parent_run_id, "t000", "trial", {}, {KEY: "k1"})


def test_a_spooling_process_goes_live_again_at_a_trials_start_once_mlflow_answers(
    store, tmp_path, monkeypatch
):
    monkeypatch.setattr(spool, "_SPOOLING", set())
    monkeypatch.setattr(spool, "_TRIED", {})
    tracker = Tracker(store.uri, store.experiment_id, store.parent_run_id, str(tmp_path / "sp"))
    spool.start_spooling(tracker, ConnectionError("the server blinked"))
    trial, _ = _trial(tracker, epochs=1)  # spooled: the process spools since the blink
    assert is_stand_in(trial)
    tracker.try_live()  # the next trial's start: MLflow answers
    assert not spool.spooling(tracker) and not list((tmp_path / "sp").glob("*.jsonl"))
    (run,) = _runs(store, "seed")
    tracker.log_metrics(run.info.run_id, {"val/hm": 20.0}, 2, timestamp=1002)  # live again
    trial_run = _runs(store, "trial")[0].info.run_id
    tracker.log_metrics(trial_run, {"val/hm": 20.0}, 2, timestamp=1002)
    assert not list((tmp_path / "sp").glob("*.jsonl"))
    _assert_delivered(store, epochs=2)


def test_while_mlflow_stays_away_a_spooling_process_tries_it_at_most_every_half_minute(
    down, monkeypatch
):
    monkeypatch.setattr(spool, "_TRIED", {})
    _trial(down)
    (path,) = Path(down.spool_dir).glob("*.jsonl")
    text, probes = path.read_text(), []
    monkeypatch.setattr(Tracker, "_answers", lambda self: probes.append(1) or False)
    down.try_live()
    down.try_live()  # at the next trial's start, seconds later: no probe
    assert len(probes) == 1 and spool.spooling(down) and path.read_text() == text
