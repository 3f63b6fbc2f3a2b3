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
