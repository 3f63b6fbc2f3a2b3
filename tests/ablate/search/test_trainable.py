"""The trainable adapter between Tune and the trial body: what it tells Tune when a trial is
restored from a Tune checkpoint. Tune's session (`tune.get_context`, `get_checkpoint`,
`report`) is played by a stand-in recording the reports; the trial body, its saved state and
MLflow are real (the replay trainer, a SQLite store)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ablate import spec as specs
from ablate.search import failures, replay
from ablate.search.tuning import trainable
from ablate.tracking import Tracker

CHECKPOINT = trainable.tune.Checkpoint  # real: the stand-in below replaces only the session
STUDY = """\
name: adapter
method: coop
base: {dataset: tiny_mnist, backbone: tiny_clip, train.epochs: 3}
parameters: {optim.lr: {values: [0.01]}}
seeds: [1]
search: {algorithm: grid}
scheduler: {type: none}
"""


class TuneSession:
    """Tune's side of one trial: the checkpoint it restores (the epochs it was told of) and
    the reports it receives."""

    Checkpoint = CHECKPOINT

    def __init__(self, told: int | None, folder: Path) -> None:
        self.reports: list[dict] = []
        self.checkpoint = None
        if told is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / trainable.TOLD_FILE).write_text(str(told))
            self.checkpoint = CHECKPOINT.from_directory(str(folder))

    def get_context(self) -> SimpleNamespace:
        return SimpleNamespace(get_trial_name=lambda: "t000", get_trial_id=lambda: "abc")

    def get_checkpoint(self):
        return self.checkpoint

    def report(self, metrics: dict, checkpoint) -> None:
        told = Path(checkpoint.path, trainable.TOLD_FILE).read_text()
        assert int(told) == metrics["epoch"]
        self.reports.append(metrics)


@pytest.fixture
def run_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    table = tmp_path / "table.csv"
    rows = ["optim.lr,seed,epoch,val/hm"] + [f"0.01,1,{e},{50 + e}" for e in (1, 2, 3)]
    table.write_text("\n".join(rows) + "\n")
    monkeypatch.setenv(replay.ENV, str(table))
    (tmp_path / "study.yaml").write_text(STUDY)
    spec = specs.load(tmp_path / "study.yaml")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").start_study("adapter", "", {}, {})
    node = SimpleNamespace(get_node_id=lambda: "node")
    monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: node)
    body = trainable.make_trainable(spec, tracker, tmp_path / "results", False)

    def run(told: int | None) -> list[int]:
        """The trial run once under Tune with a checkpoint of `told` epochs (None: a new
        trial); the epochs it reported."""
        session = TuneSession(told, tmp_path / f"checkpoint-{told}")
        monkeypatch.setattr(trainable, "tune", session)
        body({"optim.lr": 0.01})
        assert not (tmp_path / "results" / failures.FOLDER).exists(), "the trial failed"
        return [int(m["epoch"]) for m in session.reports]

    return run


def test_a_trial_restored_after_tune_had_its_every_epoch_reports_its_last_again(run_trial):
    """Killed after Tune was told of the last epoch but before it saw the trial end, the
    trial is restored with nothing to train: it must still report, or Tune ends it on an
    empty result (which ended the whole study when the result held two config keys)."""
    assert run_trial(None) == [1, 2, 3]
    assert run_trial(3) == [3]


def test_a_trial_restored_from_an_older_checkpoint_tells_tune_only_what_it_lacks(run_trial):
    assert run_trial(None) == [1, 2, 3]
    assert run_trial(1) == [2, 3]
