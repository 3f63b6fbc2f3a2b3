"""Studies end to end through real Ray Tune, real Optuna and real MLflow (SQLite in a temp dir)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from ablate.cli import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def mlflow_runs(folder: Path, study: str) -> dict[str, list]:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    by_role: dict[str, list] = {"study": [], "trial": [], "seed": []}
    for run in runs:
        by_role[run.data.tags["ablate.role"]].append(run)
    return by_role


def test_quickstart_study_runs_prunes_and_records_everything(ray_local, in_tmp, capsys):
    assert main(["search", str(REPO / "search_spaces/quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Study 'quickstart' finished" in out and "Best configuration: t" in out

    runs = mlflow_runs(in_tmp, "quickstart")
    assert len(runs["study"]) == 1
    assert len(runs["trial"]) == 8
    assert len(runs["seed"]) == 8 * 2
    assert all(r.info.status != "RUNNING" for rs in runs.values() for r in rs)
    statuses = [r.data.tags["ablate.status"] for r in runs["trial"]]
    assert statuses.count("pruned") >= 1, "ASHA should stop at least one trial early"
    assert statuses.count("completed") >= 1

    table = pq.read_table(in_tmp / "results/quickstart/results.parquet").to_pylist()
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    for trial in runs["trial"]:
        history = client.get_metric_history(trial.info.run_id, "val/hm")
        epochs = sorted(m.step for m in history)
        mine = [r for r in table if r["trial_name"] == trial.info.run_name.split()[0]]
        assert sorted({r["epoch"] for r in mine}) == epochs
        assert len(mine) == 2 * len(epochs)  # one row per (seed, epoch)
        assert {r["status"] for r in mine} == {trial.data.tags["ablate.status"]}
        if trial.data.tags["ablate.status"] == "pruned":
            assert int(trial.data.tags["ablate.stopped_epoch"]) == max(epochs) < 6
        assert trial.data.params["method"] == "coop"
        assert "optim.lr" in trial.data.params and "backbone.model" in trial.data.params
    for seed_run in runs["seed"]:
        names = [a.path for a in client.list_artifacts(seed_run.info.run_id)]
        assert "prompts.pt" in names
    parent = runs["study"][0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"quickstart.yaml", "plan.txt"} <= artifacts
    assert len(parent.data.tags["ablate.spec_sha256"]) == 64


def test_failed_trial_is_recorded_and_the_grid_goes_on(ray_local, in_tmp, capsys):
    spec = in_tmp / "fails.yaml"
    spec.write_text(
        "name: fails\nmethod: coop\n"
        "base: {train.epochs: 2, dataset.shots: 2, optim.warmup_epochs: 0}\n"
        "parameters: {optim.lr: {values: [0.05, .inf]}}\n"
        "seeds: [1]\nsearch: {algorithm: grid, max_concurrent: 2}\nscheduler: {type: none}\n"
    )
    assert main(["search", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "1 completed, 0 pruned, 1 failed" in out and "loss became" in out
    runs = mlflow_runs(in_tmp, "fails")
    failed = [r for r in runs["trial"] if r.data.tags["ablate.status"] == "failed"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "loss became" in failed[0].data.tags["ablate.error"]
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    assert "error.txt" in [a.path for a in client.list_artifacts(failed[0].info.run_id)]
    table = pq.read_table(in_tmp / "results/fails/results.parquet").to_pylist()
    done = [r for r in table if r["status"] == "completed"]
    assert len(done) == 2  # two epochs of the good trial; the failed trial's epochs say failed
    assert {r["status"] for r in table} <= {"completed", "failed"}


@pytest.mark.parametrize(("algorithm", "scheduler"), [("random", "median"), ("tpe", "hyperband")])
def test_other_searchers_and_schedulers_run(ray_local, in_tmp, algorithm, scheduler):
    spec = in_tmp / "other.yaml"
    spec.write_text(
        f"name: other-{scheduler}\nmethod: maple\n"
        "base: {method.prompt_depth: 2, train.epochs: 2, dataset.shots: 2}\n"
        "parameters: {optim.lr: {distribution: log_uniform_values, min: 0.001, max: 0.1}}\n"
        f"seeds: [1]\nsearch: {{algorithm: {algorithm}, trials: 3, max_concurrent: 2}}\n"
        f"scheduler: {{type: {scheduler}}}\n"
    )
    assert main(["search", str(spec)]) == 0
    runs = mlflow_runs(in_tmp, f"other-{scheduler}")
    assert len(runs["trial"]) == 3
    assert all(r.info.status == "FINISHED" for r in runs["trial"])


@pytest.mark.gpu
def test_gpu_auto_packs_trials_by_their_measured_memory(ray_local, in_tmp, capsys):
    text = (REPO / "search_spaces/quickstart.yaml").read_text()
    study = in_tmp / "packed.yaml"
    study.write_text(
        text.replace("name: quickstart", "name: packed")
        .replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: auto}")
        .replace("trials: 8", "trials: 2")
    )
    assert main(["search", str(study), "train.epochs=1", "train.device=cuda"]) == 0
    assert "Study 'packed' finished" in capsys.readouterr().out
    runs = mlflow_runs(in_tmp, "packed")
    assert len(runs["trial"]) == 2
