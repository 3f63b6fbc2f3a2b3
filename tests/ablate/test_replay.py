"""The replay trainer's table (ablate.search.replay), without Ray: lookup, resume, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.search import replay

TABLE = """\
optim.lr,method.prompt_length,seed,epoch,val/hm,test/hm
0.01,1,1,1,50.0,
0.01,1,1,2,55.0,54.0
0.01,1,2,1,60.0,
0.01,1,2,2,65.0,64.0
0.1,1,1,1,70.0,
0.1,1,1,2,75.0,74.0
"""


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(TABLE)
    monkeypatch.setenv(replay.ENV, str(path))
    return path


def test_fit_seeds_yields_each_seeds_rows_epoch_by_epoch(table):
    epochs = list(replay.fit_seeds({"optim.lr": 0.01, "method.prompt_length": 1}, [2, 1], 2))
    assert [[m.epoch for m in per_seed] for per_seed in epochs] == [[1, 1], [2, 2]]
    assert [m.metrics["val/hm"] for m in epochs[1]] == [65.0, 55.0]
    assert "test/hm" not in epochs[0][0].metrics and epochs[1][0].metrics["test/hm"] == 64.0
    assert epochs[0][0].method.prompt_tensors() == {}


def test_a_resumed_trial_continues_after_its_epoch(table):
    values = {"optim.lr": 0.1, "method.prompt_length": 1}
    first = next(iter(replay.fit_seeds(values, [1], 2)))
    rest = list(replay.fit_seeds(values, [1], 2, [first[0].state()]))
    assert [per_seed[0].metrics["val/hm"] for per_seed in rest] == [75.0]


def test_a_configuration_or_seed_not_in_the_table_is_named(table):
    with pytest.raises(KeyError, match="optim.lr=0.3"):
        list(replay.fit_seeds({"optim.lr": 0.3, "method.prompt_length": 1}, [1], 2))
    with pytest.raises(KeyError, match="seed 2"):
        list(replay.fit_seeds({"optim.lr": 0.1, "method.prompt_length": 1}, [2], 2))


def test_replay_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv(replay.ENV, raising=False)
    assert replay.table_path() is None


def test_injected_faults_follow_the_configuration_and_its_share(table, monkeypatch):
    monkeypatch.setenv(replay.FAULTS_ENV, "raise:0.10,nan:0.05")
    configs = [
        {"optim.lr": lr / 1000, "method.prompt_length": n} for lr in range(100) for n in (1, 2)
    ]
    drawn = [replay.fault_of(c, 12) for c in configs]
    assert drawn == [replay.fault_of(c, 12) for c in configs]  # the same every time
    kinds = [f[0] for f in drawn if f]
    assert 10 <= kinds.count("raise") <= 32 and 3 <= kinds.count("nan") <= 20  # ~20 and ~10
    assert {f[1] for f in drawn if f} <= set(range(1, 13))
    monkeypatch.setenv(replay.FAULTS_ENV, "raise:1")
    with pytest.raises(replay.InjectedFault, match="at epoch"):
        list(replay.fit_seeds({"optim.lr": 0.01, "method.prompt_length": 1}, [1], 2))
    monkeypatch.setenv(replay.FAULTS_ENV, "nan:1")
    epochs = list(replay.fit_seeds({"optim.lr": 0.01, "method.prompt_length": 1}, [1], 2))
    losses = [e[0].metrics.get("train/loss") for e in epochs]
    assert [x for x in losses if x is not None and x != x] == losses[-1:]  # NaN at one epoch


@pytest.mark.parametrize("value", ["raise", "oops:0.1", "raise:2", "raise:0.7,nan:0.7"])
def test_a_bad_fault_setting_is_named(monkeypatch, value):
    monkeypatch.setenv(replay.FAULTS_ENV, value)
    with pytest.raises(ValueError, match=replay.FAULTS_ENV):
        replay.fault_rates()
