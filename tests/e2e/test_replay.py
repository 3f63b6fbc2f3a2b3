"""`ablate search` end to end with the replay trainer: real Ray Tune, Optuna, MLflow and Parquet,
metrics read from a small table instead of training (ablate.search.replay)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from ablate.search import replay

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

LRS, LENGTHS, SEEDS, EPOCHS = (0.01, 0.1), (1, 2), (1, 2), 3
STUDY = f"""\
name: replayed
method: maple
base: {{dataset: tiny_mnist, backbone: tiny_clip, train.epochs: {EPOCHS}}}
parameters:
  optim.lr: {{values: {list(LRS)}}}
  method.prompt_length: {{values: {list(LENGTHS)}}}
seeds: {list(SEEDS)}
search: {{algorithm: grid, max_concurrent: 2}}
scheduler: {{type: none}}
"""


def val_hm(lr: float, length: int, seed: int, epoch: int) -> float:
    """A made-up learning curve: every (configuration, seed, epoch) distinct."""
    return 50 + 100 * lr + 3 * length + seed / 10 + epoch


def write_table(path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optim.lr", "method.prompt_length", "seed", "epoch", "val/hm", "test/hm"])
        for lr in LRS:
            for length in LENGTHS:
                for seed in SEEDS:
                    for epoch in range(1, EPOCHS + 1):
                        test = val_hm(lr, length, seed, epoch) - 1 if epoch == EPOCHS else ""
                        writer.writerow(
                            [lr, length, seed, epoch, val_hm(lr, length, seed, epoch), test]
                        )


def test_a_replayed_study_records_the_tables_metrics(tmp_path):
    write_table(tmp_path / "table.csv")
    (tmp_path / "study.yaml").write_text(STUDY)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {replay.ENV: str(tmp_path / "table.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", "search", "study.yaml"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Study 'replayed' finished" in done.stdout

    rows = pq.read_table(tmp_path / "results/replayed/results.parquet").to_pylist()
    assert len(rows) == len(LRS) * len(LENGTHS) * len(SEEDS) * EPOCHS
    for row in rows:
        lr, length = float(row["optim.lr"]), int(row["method.prompt_length"])
        expected = val_hm(lr, length, row["seed"], row["epoch"])
        assert row["val/hm"] == pytest.approx(expected)
        if row["epoch"] == EPOCHS:
            assert row["test/hm"] == pytest.approx(expected - 1)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("replayed")
    runs = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'trial'")
    assert len(runs) == len(LRS) * len(LENGTHS)
    # the study run carries its answer: the best configuration's metrics and parameters
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'study'")
    best = max(runs, key=lambda r: r.data.metrics["val/hm"])
    assert parent.data.tags["ablate.best_trial"] == best.data.tags["mlflow.runName"].split()[0]
    assert parent.data.metrics["best/val/hm"] == pytest.approx(best.data.metrics["val/hm"])
    assert parent.data.metrics["best/test/hm"] == pytest.approx(best.data.metrics["test/hm"])
    for run in runs:
        lr, length = (
            float(run.data.params["optim.lr"]),
            int(run.data.params["method.prompt_length"]),
        )
        mean = math.fsum(val_hm(lr, length, s, EPOCHS) for s in SEEDS) / len(SEEDS)
        assert run.data.metrics["val/hm"] == pytest.approx(mean)
        assert run.data.tags["ablate.status"] == "completed"
