"""A suite of datasets end to end through real Ray Tune, Optuna, MLflow and Parquet: rows per
dataset, the suite mean of the seed means is what the scheduler and the searcher see, the papers'
table, the report of two studies side by side, and a killed suite study resumed exactly."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from ablate.search import replay
from tests.e2e.test_resume import assert_nothing_lost, kill_after_first_result, search_command

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

LRS, DATASETS, SEEDS, EPOCHS = (0.01, 0.1), ("tiny_mnist", "tiny_fashion"), (1, 2), 3
SUITE = """\
name: {name}
method: maple
datasets: [tiny_mnist, tiny_fashion]
base: {{backbone: tiny_clip, train.epochs: 3}}
parameters:
  optim.lr: {{values: [0.01, 0.1]}}
seeds: [1, 2]
search: {{algorithm: grid, max_concurrent: 2}}
scheduler: {{type: none}}
"""


def val_hm(lr: float, dataset: str, seed: int, epoch: int, shift: float) -> float:
    """A made-up curve in which every (configuration, dataset, seed, epoch) differs."""
    return 40 + shift + 100 * lr + 10 * DATASETS.index(dataset) + seed / 10 + epoch


def write_table(path: Path, shift: float) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        head = [
            "optim.lr",
            "dataset",
            "seed",
            "epoch",
            "val/hm",
            "test/base",
            "test/new",
            "test/hm",
        ]
        writer.writerow(head)
        for lr in LRS:
            for dataset in DATASETS:
                for seed in SEEDS:
                    for epoch in range(1, EPOCHS + 1):
                        value = val_hm(lr, dataset, seed, epoch, shift)
                        last = epoch == EPOCHS
                        base, new = (value + 5, value - 5) if last else ("", "")
                        hm = 2 * (value + 5) * (value - 5) / (2 * value) if last else ""
                        writer.writerow([lr, dataset, seed, epoch, value, base, new, hm])


def suite_mean(lr: float, epoch: int, shift: float) -> float:
    means = [math.fsum(val_hm(lr, d, s, epoch, shift) for s in SEEDS) / 2 for d in DATASETS]
    return math.fsum(means) / len(means)


def run_replayed(folder: Path, name: str, shift: float) -> subprocess.CompletedProcess:
    write_table(folder / f"{name}.csv", shift)
    (folder / f"{name}.yaml").write_text(SUITE.format(name=name))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {replay.ENV: str(folder / f"{name}.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", "search", f"{name}.yaml"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def shifted(results: Path, name: str, other: str, points: float) -> None:
    """A copy of study `name` whose every accuracy is `points` higher (a second study)."""
    table = pq.read_table(results / name / "results.parquet").to_pylist()
    for row in table:
        row |= {k: v + points for k, v in row.items() if k.startswith(("val/", "test/")) and v}
        row["study"] = other
    (results / other).mkdir()
    pq.write_table(pa.Table.from_pylist(table), results / other / "results.parquet")


def test_a_suite_study_decides_on_the_suite_mean_and_reports_per_dataset(tmp_path):
    done = run_replayed(tmp_path, "suite-a", shift=0.0)
    best = suite_mean(max(LRS), EPOCHS, 0.0)
    assert f"val/hm = {best:.2f} (mean over 2 datasets" in done.stdout

    rows = pq.read_table(tmp_path / "results/suite-a/results.parquet").to_pylist()
    assert len(rows) == len(LRS) * len(DATASETS) * len(SEEDS) * EPOCHS
    cells = {(r["optim.lr"], r["dataset"], r["seed"], r["epoch"]) for r in rows}
    assert len(cells) == len(rows)  # one row per (configuration, dataset, seed, epoch)
    for row in rows:
        expected = val_hm(float(row["optim.lr"]), row["dataset"], row["seed"], row["epoch"], 0.0)
        assert row["val/hm"] == pytest.approx(expected)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("suite-a")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags["ablate.role"] == "trial"]
    seeds = [r for r in runs if r.data.tags["ablate.role"] == "seed"]
    assert len(trials) == len(LRS) and len(seeds) == len(LRS) * len(DATASETS) * len(SEEDS)
    for run in trials:  # the trial run's val/hm is what Tune's scheduler and searcher got
        lr = float(run.data.params["optim.lr"])
        history = client.get_metric_history(run.info.run_id, "val/hm")
        by_epoch = {m.step: m.value for m in history}
        assert by_epoch == pytest.approx({e: suite_mean(lr, e, 0.0) for e in (1, 2, 3)})
        mnist = math.fsum(val_hm(lr, "tiny_mnist", s, EPOCHS, 0.0) for s in SEEDS) / 2
        assert run.data.metrics["tiny_mnist/val/hm"] == pytest.approx(mnist)
    names = {r.data.tags["mlflow.runName"] for r in seeds}
    assert any("tiny_fashion seed=2" in n for n in names)  # readable in the UI

    report = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "report", "suite-a", "--no-mlflow"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "results/suite-a/report/paper.md").read_text()
    base = math.fsum(val_hm(0.1, "tiny_fashion", s, EPOCHS, 0.0) + 5 for s in SEEDS) / 2
    assert f"| tiny_fashion | {base:.2f} |" in table
    assert (
        "**Average**" in table
        and "\\multicolumn" in (tmp_path / "results/suite-a/report/paper.tex").read_text()
    )

    shifted(tmp_path / "results", "suite-a", "suite-b", 2.0)  # 2 points better everywhere
    both = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "report", "suite-a", "suite-b"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert "suite-b vs suite-a: Δ HM +2.00" in both.stdout
    assert (tmp_path / "results/comparisons/suite-a+suite-b/paper.tex").is_file()


def test_a_killed_suite_study_resumes_every_dataset_exactly(tmp_path):
    write_table(tmp_path / "table.csv", shift=0.0)
    spec = tmp_path / "study.yaml"
    spec.write_text(SUITE.format(name="nl"))
    command, env = search_command(spec)
    env |= {replay.ENV: str(tmp_path / "table.csv"), "PYTHONPATH": str(REPO)}
    env[replay.PACE_ENV] = "1.0"  # each dataset's epoch takes a second: time to kill it
    kill_after_first_result(command, tmp_path, env)

    env[replay.PACE_ENV] = "0"
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the interrupted study 'nl'" in again.stdout
    # a suite's cells are (configuration, dataset, seed): 2 x 2 x 2 seed runs of 3 epochs
    runs, rows = assert_nothing_lost(tmp_path, trials=2, seeds=4, epochs=EPOCHS)
    assert {r["dataset"] for r in rows} == set(DATASETS)
    assert {r.data.tags["ablate.status"] for r in runs["trial"]} == {"completed"}
    for row in rows:  # every cell the table's, whichever run trained it
        expected = val_hm(float(row["optim.lr"]), row["dataset"], row["seed"], row["epoch"], 0.0)
        assert row["val/hm"] == pytest.approx(expected)
