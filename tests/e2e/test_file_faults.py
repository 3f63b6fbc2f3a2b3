"""Disk and file faults on a real study (replay trainer: real Ray Tune, Optuna, MLflow and
Parquet, metrics read from a table): a full disk, a truncated Parquet part or table, a
truncated trial state, a locked MLflow SQLite file. Each is named, loses nothing recorded,
and the next run repairs or retrains exactly what was lost."""

from __future__ import annotations

import collections
import csv
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from ablate.search import replay
from tests.conftest import tmpfs
from tests.e2e.test_resume import crash

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
LRS, LENGTHS = (0.01, 0.1), (1, 2)


def replayed_study(folder: Path, epochs: int, lengths=LENGTHS) -> tuple[list[str], dict]:
    """A grid of len(LRS) x len(lengths) configurations, one seed, `epochs` replayed epochs."""
    with (folder / "table.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optim.lr", "method.prompt_length", "seed", "epoch", "val/hm"])
        for lr in LRS:
            for length in LENGTHS:
                for epoch in range(1, epochs + 1):
                    writer.writerow([lr, length, 1, epoch, 50 + 100 * lr + length + epoch / 10])
    (folder / "study.yaml").write_text(
        "name: ff\nmethod: maple\n"
        f"base: {{dataset: tiny_mnist, backbone: tiny_clip, train.epochs: {epochs}}}\n"
        f"parameters:\n  optim.lr: {{values: {list(LRS)}}}\n"
        f"  method.prompt_length: {{values: {list(lengths)}}}\n"
        "seeds: [1]\nsearch: {algorithm: grid, max_concurrent: 2}\nscheduler: {type: none}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {replay.ENV: str(folder / "table.csv"), "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
    return [sys.executable, "-m", "ablate.cli", "search", "study.yaml"], env


def run(command, folder, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, **kwargs)


def cells(folder: Path) -> list[tuple]:
    rows = pq.read_table(folder / "results/ff/results.parquet").to_pylist()
    return [(r["trial_key"], r["seed"], r["epoch"], r["status"]) for r in rows]


def assert_every_cell_once(folder: Path, configs: int, epochs: int) -> None:
    found = cells(folder)
    keys = [c[:3] for c in found]
    assert len(keys) == len(set(keys)) == configs * epochs, collections.Counter(keys)
    assert {c[3] for c in found} == {"completed"}
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ff")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags["ablate.role"] == "trial"]
    assert len(trials) == configs  # no duplicate runs
    assert {r.info.status for r in runs} == {"FINISHED"}
    for trial in trials:
        steps = {m.step for m in client.get_metric_history(trial.info.run_id, "val/hm")}
        assert steps == set(range(1, epochs + 1))


def wait_for(predicate, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.1)
    assert predicate(), "timed out"


@pytest.fixture
def small_disk(tmp_path: Path):
    """results/ on a 4 MiB tmpfs (root only; skipped where mount is not permitted): room for
    the finished study, whose Tune checkpoints (one per epoch, ~4 KiB each there) it keeps."""
    with tmpfs(tmp_path / "results", "4m") as folder:
        yield folder


def test_a_full_disk_stops_the_study_and_a_rerun_after_freeing_space_resumes(tmp_path, small_disk):
    command, env = replayed_study(tmp_path, epochs=30)
    env |= {"ABLATE_DISK_RESERVE_MB": "1.2"}  # stop below 1.2 MiB free: after a few epochs
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (4096 - 1300) * 1024)
    first = run(command, tmp_path, env, timeout=300)
    out = first.stdout + first.stderr
    assert first.returncode == 1, out[-3000:]
    assert f"stopped: disk full: {small_disk}/ff" in out
    assert "Traceback" not in out
    done = cells(tmp_path)
    assert 0 < len(done) < 4 * 30  # stopped mid-study, what was written is whole

    refused = run(command, tmp_path, env | {"ABLATE_DISK_RESERVE_MB": "3"})
    assert refused.returncode == 1 and f"disk full: {small_disk}/ff" in refused.stderr
    ballast.unlink()  # the user frees space
    again = run(command, tmp_path, env, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the interrupted study 'ff'" in again.stdout
    assert_every_cell_once(tmp_path, configs=4, epochs=30)


def test_truncated_parquet_files_are_set_aside_and_their_cells_trained_again(tmp_path):
    command, env = replayed_study(tmp_path, epochs=3)
    assert run(command, tmp_path, env).returncode == 0
    table = tmp_path / "results/ff/results.parquet"
    table.write_bytes(table.read_bytes()[:100])  # a copy cut short, a torn write

    report = run([sys.executable, "-m", "ablate.cli", "report", "ff"], tmp_path, env)
    assert f"{table} cannot be read" in report.stdout + report.stderr
    assert (tmp_path / "results/ff/results.parquet.corrupt").exists()  # kept, not deleted

    again = run(command, tmp_path, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 configurations of 'ff' have no rows left" in again.stdout + again.stderr
    assert_every_cell_once(tmp_path, configs=4, epochs=3)
    assert run(command, tmp_path, env).stdout.count("nothing to run") == 1  # now done


def test_a_truncated_trial_state_restarts_its_trial_without_duplicates(tmp_path):
    command, env = replayed_study(tmp_path, epochs=12, lengths=(1,))
    env[replay.PACE_ENV] = "0.5"
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state_dir = tmp_path / "results/ff/state"

    def epochs_saved() -> list[int]:
        states = [torch.load(p, weights_only=False) for p in state_dir.glob("*.pt")]
        return [s["state"]["epoch"] for s in states]

    wait_for(lambda: len([e for e in epochs_saved() if e >= 3]) >= 2)
    crash(driver)  # Tune's snapshot may be seconds older than the states
    states = sorted(state_dir.glob("*.pt"))
    for state in states:
        state.write_bytes(state.read_bytes()[:64])

    env[replay.PACE_ENV] = "0"
    again = run(command, tmp_path, env, timeout=300)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "its saved state cannot be read" in out and "trains again from epoch 1" in out, out
    assert all(f"{s}.corrupt" in out for s in states), (states, out[-5000:])  # named
    assert_every_cell_once(tmp_path, configs=2, epochs=12)


def test_a_locked_mlflow_store_delays_tracking_but_fails_no_trial(tmp_path):
    command, env = replayed_study(tmp_path, epochs=12)
    env |= {"ABLATE_SQLITE_LOCK_WAIT_S": "60"}
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    parts = tmp_path / "results/ff/parts"
    wait_for(lambda: parts.exists() and any(parts.iterdir()))
    holder = sqlite3.connect(tmp_path / "mlflow.db", timeout=60, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writes to the store for a while,
    time.sleep(25)  # past the 20 s that MLflow's SQLite connections wait by themselves
    holder.execute("COMMIT")
    holder.close()
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-3000:]
    assert f"the MLflow store {tmp_path / 'mlflow.db'} is locked by another process" in out
    assert "is free again" in out
    assert "0 failed" in out, out[-6000:]
    assert_every_cell_once(tmp_path, configs=4, epochs=12)
