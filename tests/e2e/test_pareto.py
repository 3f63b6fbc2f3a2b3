"""A study with two objectives end to end: real Ray Tune, Optuna (multi-objective sampling) and
MLflow, metrics replayed from a small table (ablate.search.replay). The front must be the
non-dominated configurations, in the summary, on the study's parent run and in the report."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from ablate.search import pareto, replay

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

LENGTHS, LRS, SEEDS, EPOCHS = (1, 2, 4), (0.01, 0.1), (1, 2), 2
GOALS = ("maximize", "minimize")
STUDY = f"""\
name: front
method: maple
base: {{dataset: tiny_mnist, backbone: tiny_clip, train.epochs: {EPOCHS}}}
metric:
  - {{name: val/hm, goal: maximize}}
  - {{name: cost/params, goal: minimize}}
parameters:
  method.prompt_length: {{values: {list(LENGTHS)}}}
  optim.lr: {{values: {list(LRS)}}}
seeds: {list(SEEDS)}
search: {{algorithm: grid, max_concurrent: 2}}
scheduler: {{type: none}}
"""


def val_hm(length: int, lr: float, seed: int, epoch: int) -> float:
    """Longer prompts help up to 2 tokens; 4 is worse than 2 and costs more (dominated)."""
    return 50 + {1: 5, 2: 10, 4: 8}[length] + 100 * lr + seed / 10 + epoch


def params(length: int) -> float:
    return 512.0 * length


def expected_front() -> set[tuple[int, float]]:
    configs = list(itertools.product(LENGTHS, LRS))
    means = [
        [sum(val_hm(n, lr, s, EPOCHS) for s in SEEDS) / len(SEEDS), params(n)] for n, lr in configs
    ]
    return {configs[i] for i in pareto.non_dominated(means, GOALS)}


def write_table(path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["method.prompt_length", "optim.lr", "seed", "epoch", "val/hm", "cost/params"]
        )
        for n, lr, seed in itertools.product(LENGTHS, LRS, SEEDS):
            for epoch in range(1, EPOCHS + 1):
                writer.writerow([n, lr, seed, epoch, val_hm(n, lr, seed, epoch), params(n)])


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {replay.ENV: str(tmp_path / "table.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", *args]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_two_objective_study_finds_the_non_dominated_front(tmp_path):
    write_table(tmp_path / "table.csv")
    (tmp_path / "study.yaml").write_text(STUDY)
    front = expected_front()
    assert 1 < len(front) < len(LENGTHS) * len(LRS)  # the made-up table has dominated configs

    done = run(tmp_path, "search", "study.yaml")
    rows = pq.read_table(tmp_path / "results/front/results.parquet").to_pylist()
    config_of = {
        r["trial_name"]: (int(r["method.prompt_length"]), float(r["optim.lr"])) for r in rows
    }
    names = {name for name, config in config_of.items() if config in front}
    assert len(config_of) == len(LENGTHS) * len(LRS)
    assert f"Pareto front: {len(front)} of {len(config_of)} completed" in done.stdout
    for name in config_of:
        assert (f"    {name}  val/hm" in done.stdout) == (name in names), done.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("front")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'study'")
    assert set(parent.data.tags["ablate.pareto_front"].split()) == names
    for name in names:
        length, lr = config_of[name]
        mean = sum(val_hm(length, lr, s, EPOCHS) for s in SEEDS) / len(SEEDS)
        assert parent.data.metrics[f"pareto/{name}/val/hm"] == pytest.approx(mean)
        assert parent.data.metrics[f"pareto/{name}/cost/params"] == pytest.approx(params(length))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "pareto_front.csv" in artifacts

    run(tmp_path, "report", "front")
    report = tmp_path / "results/front/report"
    table = (report / "pareto_front.md").read_text()
    for name in config_of:
        assert (f"| {name} " in table) == (name in names), table
    assert (report / "pareto.png").stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/pareto_front.md", "report/report.html"} <= logged
