"""A study reviewed in the MLflow UI: the run tree reads well, `ablate ui` serves it to a real
browser (headless Chromium), and a shared tracking server on PostgreSQL holds the same tree."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ablate.cli import main

pytestmark = pytest.mark.slow
STUDY = """\
name: ui-study
description: Which context length? (UI review test)
method: coop
base: {train.epochs: 2, dataset.shots: 2}
parameters:
  optim.lr: {values: [0.01, 0.1]}
  method.prompt_length: {values: [2]}
seeds: [1, 2]
search: {algorithm: grid, max_concurrent: 2}
scheduler: {type: none}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds}s")


def tree(uri: str) -> dict[str, list]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui-study")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    out: dict[str, list] = {"study": [], "trial": [], "seed": []}
    for run in runs:
        out[run.data.tags["ablate.role"]].append(run)
    return out


@pytest.fixture(scope="module")
def sqlite_study(ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    (folder / "study.yaml").write_text(STUDY)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["search", "study.yaml"]) == 0
    finally:
        os.chdir(cwd)
    return folder


def test_the_study_tree_reads_well(sqlite_study):
    uri = f"sqlite:///{sqlite_study / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = tree(uri)
    experiment = client.get_experiment_by_name("ui-study")
    assert experiment.tags["mlflow.note.content"].startswith("Which context length?")
    (parent,) = runs["study"]
    assert parent.data.tags["mlflow.note.content"].startswith("Which context length?")
    assert {"study.yaml", "plan.txt"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}

    names = sorted(r.info.run_name for r in runs["trial"])
    assert [n.split()[0] for n in names] == ["t000", "t001"]  # sampling order
    assert {n.split(" ", 1)[1] for n in names} == {
        "prompt_length=2 lr=0.01",
        "prompt_length=2 lr=0.1",
    }
    for trial in runs["trial"]:
        assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.data.tags["ablate.status"] == "completed"
        assert trial.data.params["optim.lr"] in ("0.01", "0.1")  # same dotted keys as the file
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val/hm")]
        assert sorted(steps) == [1, 2]  # the seed mean per epoch, step=epoch
        assert "config.yaml" in {a.path for a in client.list_artifacts(trial.info.run_id)}
    for seed in runs["seed"]:
        parent_trial = seed.data.tags["mlflow.parentRunId"]
        assert parent_trial in {t.info.run_id for t in runs["trial"]}
        (data,) = seed.inputs.dataset_inputs
        assert data.dataset.name == f"digits-2shot-seed{seed.data.params['seed']}"
        assert len(data.dataset.digest) == 16
        local = client.download_artifacts(seed.info.run_id, "prompts.json")
        prompts = json.loads(Path(local).read_text())
        assert len(prompts["ctx"]["nearest_tokens"]) == 2 and len(prompts["ctx"]["norms"]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)")
def test_ablate_ui_serves_the_study_to_a_browser(sqlite_study, tmp_path):
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "ui", "ui-study", "--port", str(port)],
        cwd=sqlite_study,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [ui.stdout.readline() for _ in range(3)]
        link = lines[2].split()[-1]
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        wait_http(f"http://127.0.0.1:{port}/health")
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'chrome'}",
                "--virtual-time-budget=30000",
                "--dump-dom",
                link,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        assert "study ui-study" in dom  # the parent run's page rendered by the MLflow app
    finally:
        ui.terminate()
        ui.wait(timeout=30)


@pytest.fixture(scope="module")
def postgres():
    if PG_BIN is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="ablate-pg-", dir="/tmp"))
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run([*as_pg, PG_BIN / "initdb", "-D", folder / "data", "-U", "postgres",
                    "--auth=trust"], check=True, capture_output=True)  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    subprocess.run([*as_pg, PG_BIN / "pg_ctl", "-D", folder / "data", "-o", options, "-w",
                    "-l", folder / "log", "start"], check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([*as_pg, PG_BIN.parent / "bin" / "createdb", "-h", "127.0.0.1", "-p",
                        str(port), "-U", "postgres", "mlflow"], check=True)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_pg, PG_BIN / "pg_ctl", "-D", folder / "data", "-m", "fast", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_tracking_server_on_postgresql_holds_the_same_tree(
    ray_local, postgres, sqlite_study, tmp_path
):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=(tmp_path / "server.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{uri}/health", seconds=180)
        except TimeoutError:
            pytest.fail((tmp_path / "server.log").read_text()[-3000:])
        (tmp_path / "study.yaml").write_text(STUDY)
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            assert main(["search", "study.yaml", "--tracking-uri", uri]) == 0
        finally:
            os.chdir(cwd)
        assert not (tmp_path / "mlflow.db").exists()
        server_tree = tree(uri)
        local_tree = tree(f"sqlite:///{sqlite_study / 'mlflow.db'}")
        for role in ("study", "trial", "seed"):
            assert sorted(r.info.run_name.split(" 20")[0] for r in server_tree[role]) == sorted(
                r.info.run_name.split(" 20")[0] for r in local_tree[role]
            )
            assert [r.data.tags["ablate.status"] for r in server_tree[role]] == [
                r.data.tags["ablate.status"] for r in local_tree[role]
            ]
        seed = server_tree["seed"][0]
        client = MlflowClient(uri)
        assert {"prompts.pt", "prompts.json"} <= {
            a.path for a in client.list_artifacts(seed.info.run_id)
        }
        out = subprocess.run(
            [sys.executable, "-m", "ablate.cli", "ui", "ui-study", "--tracking-uri", uri],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0 and f"{uri}/#/experiments/" in out.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
