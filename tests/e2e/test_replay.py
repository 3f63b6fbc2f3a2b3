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


def write_table(path: Path, configs: list[tuple[float, int]] | None = None) -> None:
    """The table of `configs` (lr, prompt length), by default every configuration."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optim.lr", "method.prompt_length", "seed", "epoch", "val/hm", "test/hm"])
        for lr, length in configs or [(lr, n) for lr in LRS for n in LENGTHS]:
            for seed in SEEDS:
                for epoch in range(1, EPOCHS + 1):
                    val = val_hm(lr, length, seed, epoch)
                    test = val - 1 if epoch == EPOCHS else ""
                    writer.writerow([lr, length, seed, epoch, val, test])


def search(folder: Path) -> subprocess.CompletedProcess:
    """`ablate search study.yaml` in `folder`, replaying its table.csv."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {replay.ENV: str(folder / "table.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", "search", "study.yaml"]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)


def test_a_replayed_study_records_the_tables_metrics(tmp_path):
    write_table(tmp_path / "table.csv")
    (tmp_path / "study.yaml").write_text(STUDY)
    done = search(tmp_path)
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


def test_trials_that_fail_before_their_first_report_leave_the_study_going(tmp_path):
    """Two configurations are missing from the table: their trials fail at once, before any
    report. With two searched parameters, Tune's check for the metric took such a trial's
    empty result (its config, two keys) for a result lacking the metric and ended the whole
    study; the trials must be recorded failed, and the others trained."""
    kept = [(LRS[0], LENGTHS[0]), (LRS[1], LENGTHS[1])]
    write_table(tmp_path / "table.csv", kept)
    (tmp_path / "study.yaml").write_text(STUDY.replace("seeds: [1, 2]", "seeds: [1]"))
    done = search(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 trials, 2 completed, 0 pruned, 2 failed" in done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("Failed: t")]
    assert len(failed) == 2 and all("the replay table has no" in line for line in failed)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("replayed")
    runs = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'trial'")
    statuses = {
        (float(r.data.params["optim.lr"]), int(r.data.params["method.prompt_length"])): (
            r.data.tags["ablate.status"]
        )
        for r in runs
    }
    assert statuses == {c: "completed" if c in kept else "failed" for c in statuses}
    assert len(statuses) == 4
