"""Nothing lost: a killed study resumes, a finished one extends, a broken one stops early."""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from ablate.cli import main

pytestmark = pytest.mark.slow


def study_file(
    folder: Path, trials: int, seeds: str, epochs: int = 3, name: str = "nl", concurrent: int = 2
) -> Path:
    path = folder / "study.yaml"
    path.write_text(
        f"name: {name}\nmethod: coop\n"
        f"base: {{train.epochs: {epochs}, dataset.shots: 4, optim.warmup_epochs: 0}}\n"
        "parameters:\n"
        "  optim.lr: {distribution: log_uniform_values, min: 0.001, max: 0.1}\n"
        "  method.prompt_length: {values: [2, 4]}\n"
        f"seeds: {seeds}\n"
        f"search: {{algorithm: random, trials: {trials}, max_concurrent: {concurrent}}}\n"
        "scheduler: {type: none}\n"
    )
    return path


def runs_by_role(folder: Path, name: str = "nl") -> dict[str, list]:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    out: dict[str, list] = {"study": [], "trial": [], "seed": []}
    for run in client.search_runs([experiment.experiment_id], max_results=5000):
        out[run.data.tags["ablate.role"]].append(run)
    return out


def assert_nothing_lost(folder: Path, trials: int, seeds: int, epochs: int, name: str = "nl"):
    runs = runs_by_role(folder, name)
    assert len(runs["trial"]) == trials
    assert len(runs["seed"]) == trials * seeds
    assert not [r for rs in runs.values() for r in rs if r.info.status == "RUNNING"]
    rows = pq.read_table(folder / f"results/{name}/results.parquet").to_pylist()
    cells = [(r["trial_key"], r["seed"], r["epoch"]) for r in rows]
    per_seed = collections.Counter((r["trial_name"], r["seed"]) for r in rows)
    assert len(cells) == len(set(cells)) == trials * seeds * epochs, f"epochs per seed: {per_seed}"
    return runs, rows


def search_command(spec: Path) -> tuple[list[str], dict[str, str]]:
    """`ablate search SPEC` as a separate process, on the default store beside the file."""
    env = os.environ | {"RAY_DEDUP_LOGS": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return [sys.executable, "-m", "ablate.cli", "search", str(spec)], env


def crash(driver: subprocess.Popen) -> None:
    """kill -9 of the driver and every process it started, Ray's workers included (they live
    in sessions of their own and would go on writing for a while), as when a machine dies."""
    procs = [psutil.Process(driver.pid)]
    procs += procs[0].children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    driver.wait()
    psutil.wait_procs(procs, timeout=30)


def kill_after_first_result(command: list[str], folder: Path, env: dict, name: str = "nl") -> None:
    """Start the study and kill -9 its driver and local Ray (a crashed machine) as soon as a
    trial has written a result, before the table is compacted."""
    driver = subprocess.Popen(
        command, cwd=folder, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    parts = folder / f"results/{name}/parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (parts.exists() and any(parts.iterdir())):
        time.sleep(0.1)
    assert parts.exists(), "the study never wrote a result"
    crash(driver)
    assert not (folder / f"results/{name}/results.parquet").exists(), "killed too late to test"


def test_a_killed_study_resumes_without_duplicates_or_losses(tmp_path):
    spec = study_file(tmp_path, trials=4, seeds="[1, 2]", epochs=6)
    command, env = search_command(spec)
    kill_after_first_result(command, tmp_path, env)

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    failed = own_failures(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:] + failed
    assert "resuming the interrupted study 'nl'" in again.stdout
    runs, _ = assert_nothing_lost(tmp_path, trials=4, seeds=2, epochs=6)
    assert len(runs["study"]) == 1  # the same parent run, continued
    assert {r.data.tags["ablate.status"] for r in runs["trial"]} == {"completed"}, failed


def own_failures(folder: Path, name: str = "nl") -> str:
    """The trials' own failures (ablate.search.failures), to say why a trial failed."""
    files = sorted((folder / f"results/{name}/failures").glob("*.txt"))
    return "".join(f"\n{f.stem}: {f.read_text()}" for f in files)


def test_a_finished_study_extends_with_more_trials_and_seeds(ray_local, in_tmp, capsys):
    spec = study_file(in_tmp, trials=2, seeds="[1]")
    assert main(["search", str(spec)]) == 0
    assert_nothing_lost(in_tmp, trials=2, seeds=1, epochs=3)
    assert main(["search", str(spec)]) == 0
    assert "already finished" in capsys.readouterr().out

    study_file(in_tmp, trials=3, seeds="[1]")  # one more configuration
    assert main(["search", str(spec)]) == 0
    assert "2 finished configurations reused" in capsys.readouterr().out
    assert_nothing_lost(in_tmp, trials=3, seeds=1, epochs=3)

    study_file(in_tmp, trials=3, seeds="[1, 2]")  # one more seed for every configuration
    before = {r["trial_key"]: r["wall_s"] for r in pq.read_table(
        in_tmp / "results/nl/results.parquet").to_pylist() if r["seed"] == 1}  # fmt: skip
    assert main(["search", str(spec)]) == 0
    _, rows = assert_nothing_lost(in_tmp, trials=3, seeds=2, epochs=3)
    after = {r["trial_key"]: r["wall_s"] for r in rows if r["seed"] == 1}
    assert after == before  # seed 1 cells were reused, not trained again


def test_a_study_whose_trials_all_fail_stops_early(ray_local, in_tmp, capsys):
    import zipfile

    with zipfile.ZipFile(in_tmp / "weights.pt", "w") as archive:  # a zip, so it validates,
        archive.writestr("nothing", "")  # but torch cannot load it: every trial fails
    spec = in_tmp / "broken.yaml"
    spec.write_text(
        "name: broken\nmethod: coop\n"
        f"base: {{train.epochs: 2, backbone.pretrained: {in_tmp / 'weights.pt'}}}\n"
        "parameters: {optim.lr: {distribution: uniform, min: 0.001, max: 0.1}}\n"
        "search: {algorithm: random, trials: 8, max_concurrent: 1}\nscheduler: {type: none}\n"
    )
    assert main(["search", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "Stopped early" in out and "BackboneError" in out
    runs = runs_by_role(in_tmp, "broken")
    assert 3 <= len(runs["trial"]) < 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
         str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise TimeoutError("mlflow server did not start")


def test_a_tracking_outage_loses_nothing_and_sync_delivers_it(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _mlflow_server(tmp_path, port)
    # one trial at a time: the second starts (creates its runs) while the server is away
    spec = study_file(tmp_path, trials=2, seeds="[1]", epochs=8, concurrent=1)
    env = os.environ | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "search", str(spec), "--tracking-uri", uri],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    parts = tmp_path / "results/nl/parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (parts.exists() and any(parts.iterdir())):
        time.sleep(0.2)
    server.terminate()  # the tracking server goes away in the middle of the study
    server.wait()
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    assert "ablate sync nl" in out
    rows = pq.read_table(tmp_path / "results/nl/results.parquet").to_pylist()
    assert len(rows) == 2 * 8  # the results table has everything anyway

    server = _mlflow_server(tmp_path, port)
    try:
        synced = subprocess.run(
            [sys.executable, "-m", "ablate.cli", "sync", "nl"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "0 still waiting" in synced.stdout
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("nl")
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        trials = [r for r in runs if r.data.tags["ablate.role"] == "trial"]
        assert len(trials) == 2
        for run in runs:
            assert run.info.status == "FINISHED", run.info.run_name
        for run in trials:
            steps = {m.step for m in client.get_metric_history(run.info.run_id, "val/hm")}
            assert steps == set(range(1, 9))
    finally:
        server.terminate()
        server.wait()
