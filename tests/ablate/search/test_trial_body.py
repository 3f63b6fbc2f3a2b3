"""The trial body without Ray, on the replay trainer and a real MLflow SQLite store: what it
logs off the training thread arrives, the prompts are logged once per trial, and a trial resumed
after losing its last epoch's calls in flight (a kill -9) sends them again, stored once."""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ablate import spec as specs
from ablate.search import cells, replay, trial_body, trial_runs
from ablate.tracking import Tracker

STUDY = """\
name: body
method: coop
base: {dataset: tiny_mnist, backbone: tiny_clip, train.epochs: 3}
parameters: {optim.lr: {values: [0.01, 0.1]}}
seeds: [1, 2]
search: {algorithm: grid}
scheduler: {type: none}
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    table = tmp_path / "table.csv"
    rows = ["optim.lr,seed,epoch,val/hm"] + [
        f"{lr},{seed},{epoch},{50 + 10 * lr + seed + epoch}"
        for lr in (0.01, 0.1)
        for seed in (1, 2)
        for epoch in (1, 2, 3)
    ]
    table.write_text("\n".join(rows) + "\n")
    monkeypatch.setenv(replay.ENV, str(table))
    (tmp_path / "study.yaml").write_text(STUDY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri).start_study("body", "", {}, {})
    prompts: list[str] = []
    logged = trial_runs._log_prompts
    monkeypatch.setattr(
        trial_runs, "_log_prompts", lambda t, run, *a: (prompts.append(run), logged(t, run, *a))
    )
    return specs.load(tmp_path / "study.yaml"), tracker, MlflowClient(uri), prompts


def steps(client: MlflowClient, run_id: str, key: str = "val/hm") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_every_epoch_reaches_mlflow_and_the_prompts_once(setup, tmp_path):
    spec, tracker, client, prompts = setup
    where = {"ablate.node": "n1", "ablate.node_ip": "10.0.0.1"}  # what the trainable gives
    ctx = trial_body.TrialContext("a", "t000", tmp_path / "results", tracker, where=where)
    trial_body.run(spec, {"optim.lr": 0.01}, lambda metrics, state: None, ctx)
    runs = {r.data.tags["ablate.role"]: r for r in tracker.runs_of_trial("a")}
    assert all(where.items() <= r.data.tags.items() for r in tracker.runs_of_trial("a"))
    seeds = [r for r in tracker.runs_of_trial("a") if r.data.tags["ablate.role"] == "seed"]
    assert steps(client, runs["trial"].info.run_id) == [1, 2, 3]
    for run in seeds:
        assert steps(client, run.info.run_id) == [1, 2, 3]
        assert run.info.status == "FINISHED" and run.data.tags["ablate.status"] == "completed"
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"prompts.pt", "prompts.json"} <= names
    assert sorted(prompts) == sorted(r.info.run_id for r in seeds)  # once per seed


def test_a_new_trials_runs_start_on_the_tracking_thread_while_it_trains(
    setup, tmp_path, monkeypatch
):
    """Each run's creation waits until training has begun: were runs started before the first
    epoch (on the training thread), the wait would time out and the test fail."""
    spec, tracker, client, _ = setup
    training, seen = threading.Event(), []
    start_run, fit_seeds = tracker.start_run, replay.fit_seeds

    def start_run_once_training(*args, **kwargs):
        seen.append((threading.current_thread().name, training.wait(timeout=60)))
        return start_run(*args, **kwargs)

    def fit_flagged(*args, **kwargs):
        training.set()
        yield from fit_seeds(*args, **kwargs)

    monkeypatch.setattr(tracker, "start_run", start_run_once_training)
    monkeypatch.setattr(replay, "fit_seeds", fit_flagged)
    ctx = trial_body.TrialContext("a", "t000", tmp_path / "results", tracker)
    trial_body.run(spec, {"optim.lr": 0.01}, lambda metrics, state: None, ctx)
    assert len(seen) == 3  # the trial's run and one per seed
    assert all(name.startswith("ablate-tracking") and trained for name, trained in seen), seen
    for run in tracker.runs_of_trial("a"):  # nothing the first epoch logged went missing
        assert steps(client, run.info.run_id) == [1, 2, 3]


def test_a_trial_composes_its_config_once_for_its_state_key_and_its_run(
    setup, tmp_path, monkeypatch
):
    spec, tracker, _, _ = setup
    composed: list[list[str]] = []
    compose = cells.config.compose
    monkeypatch.setattr(cells.config, "compose", lambda o: (composed.append(o), compose(o))[1])
    cells.composed.cache_clear()  # what earlier tests composed in this process
    params = {"optim.lr": 0.1}
    ctx = trial_body.TrialContext("c", "t002", tmp_path / "results", tracker)
    key = cells.state_key(spec, params)
    trial_body.run(spec, params, lambda metrics, state: None, ctx)
    assert len(composed) == 1 and cells.state_key(spec, params) == key
    assert cells.state_key(spec, {"optim.lr": 0.01}) != key and len(composed) == 2


@pytest.mark.parametrize("lost", [True, False], ids=["lost", "delivered"])
def test_a_resumed_trial_sends_its_last_epochs_calls_again_stored_once(
    setup, tmp_path, monkeypatch, lost
):
    spec, tracker, client, _ = setup
    dropped = {"step": 2 if lost else -1}  # the second epoch's metrics killed in flight
    log_metrics = Tracker.log_metrics

    def flaky(self, run_id, metrics, step, timestamp=None):
        if step != dropped["step"]:
            log_metrics(self, run_id, metrics, step, timestamp)

    monkeypatch.setattr(Tracker, "log_metrics", flaky)
    states = []

    def killed_after_second_epoch(metrics, state):
        states.append(copy.deepcopy(state))
        if metrics["epoch"] == 2:
            raise RuntimeError("the worker died")

    ctx = trial_body.TrialContext("b", "t001", tmp_path / "results", tracker)
    with pytest.raises(RuntimeError):
        trial_body.run(spec, {"optim.lr": 0.1}, killed_after_second_epoch, ctx)
    trial = next(r for r in tracker.runs_of_trial("b") if r.data.tags["ablate.role"] == "trial")
    assert steps(client, trial.info.run_id) == ([1] if lost else [1, 2])
    dropped["step"] = -1
    trial_body.run(spec, {"optim.lr": 0.1}, lambda m, s: None, ctx, resume=states[-1])
    assert steps(client, trial.info.run_id) == [1, 2, 3]
    for run in tracker.runs_of_trial("b"):
        assert steps(client, run.info.run_id) == [1, 2, 3]
        assert run.info.status == "FINISHED"


NODE_1, NODE_2 = {"ablate.node": "n1"}, {"ablate.node": "n2"}


def test_another_trial_continues_a_saved_state_as_its_own(setup, tmp_path):
    """A restored searcher may suggest a configuration again under a new Tune trial id: that
    trial continues the saved state, and the runs and rows become its own."""
    spec, tracker, client, _ = setup
    states = []

    def killed_after_first_epoch(metrics, state):
        states.append(copy.deepcopy(state))
        raise RuntimeError("the driver died")

    first = trial_body.TrialContext("d", "t003", tmp_path / "results", tracker, where=NODE_1)
    with pytest.raises(RuntimeError):
        trial_body.run(spec, {"optim.lr": 0.1}, killed_after_first_epoch, first)
    again = trial_body.TrialContext("e", "t005", tmp_path / "results", tracker, where=NODE_2)
    told = []
    trial_body.run(spec, {"optim.lr": 0.1}, lambda m, s: told.append(s), again, states[0])
    assert [s["epoch"] for s in told] == [2, 3]
    assert {(r["trial_id"], r["trial_name"]) for r in told[-1]["rows"]} == {("e", "t005")}
    runs = tracker.runs_of_trial("e")
    assert len(runs) == 3 and not tracker.runs_of_trial("d")  # the trial run and two seeds
    for run in runs:
        assert steps(client, run.info.run_id) == [1, 2, 3]
        assert run.info.status == "FINISHED"
        assert run.data.tags["ablate.node"] == "n2"  # where it went on, on another node


def test_runs_a_kill_cut_short_before_their_params_are_taken_over_and_completed(
    setup, tmp_path, monkeypatch
):
    """A kill -9 between creating a run and logging its params leaves the run with its tags
    only: the configuration's next trial (no saved state: killed before its first epoch was
    saved) takes the runs over, seed by seed, and logs their params, rather than failing on
    the missing seed or starting others."""
    spec, tracker, client, _ = setup

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("the worker died in its first epoch")
        yield  # a generator, like the trainer it stands for

    first = trial_body.TrialContext("g", "t007", tmp_path / "results", tracker)
    with monkeypatch.context() as patch:
        patch.setattr(Tracker, "log_params", lambda self, run_id, params: None)
        patch.setattr(replay, "fit_seeds", killed)
        with pytest.raises(KeyboardInterrupt):
            trial_body.run(spec, {"optim.lr": 0.1}, lambda m, s: None, first)
    cut_short = tracker.runs_of_trial("g")
    assert len(cut_short) == 3 and not any(r.data.params for r in cut_short)

    again = trial_body.TrialContext("h", "t008", tmp_path / "results", tracker)
    trial_body.run(spec, {"optim.lr": 0.1}, lambda m, s: None, again)
    runs = tracker.runs_of_trial("h")
    assert {r.info.run_id for r in runs} == {r.info.run_id for r in cut_short}
    roles = {r.data.tags["ablate.role"]: r for r in runs}
    assert roles["trial"].data.params["optim.lr"] == "0.1"
    seeds = sorted(int(r.data.params["seed"]) for r in runs if r.data.tags["ablate.role"] == "seed")
    assert seeds == [1, 2]
    for run in runs:
        assert steps(client, run.info.run_id) == [1, 2, 3]
        assert run.info.status == "FINISHED"


def test_a_state_at_the_last_epoch_leaves_nothing_to_do(setup, tmp_path):
    spec, tracker, client, _ = setup
    states = []
    ctx = trial_body.TrialContext("f", "t006", tmp_path / "results", tracker)
    trial_body.run(spec, {"optim.lr": 0.01}, lambda m, s: states.append(copy.deepcopy(s)), ctx)

    def never(metrics, state):
        raise AssertionError("a finished trial reported again")

    trial_body.run(spec, {"optim.lr": 0.01}, never, ctx, resume=states[-1])
    for run in tracker.runs_of_trial("f"):
        assert run.info.status == "FINISHED"  # not reopened


def test_the_state_key_is_the_configuration_and_its_seeds(setup, tmp_path):
    spec, *_ = setup
    key = cells.state_key(spec, {"optim.lr": 0.1})
    assert key == cells.state_key(spec, {"optim.lr": 0.1})
    assert key != cells.state_key(spec, {"optim.lr": 0.01})
    more_seeds = dataclasses.replace(spec, seeds=[1, 2, 3])
    assert key != cells.state_key(more_seeds, {"optim.lr": 0.1})
