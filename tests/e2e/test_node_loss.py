"""A node lost mid-study: two Ray nodes on loopback (1 CPU each), the worker node's raylet killed
with SIGKILL while a trial trains there. The trial resumes from its last checkpoint on the
surviving node and completes; the lost node costs no retry and no cell is lost or repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_cluster import loopback_cluster
from tests.e2e.test_resume import assert_nothing_lost, study_file

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _raylet_of(temp_dir: Path) -> psutil.Process:
    """The raylet of the node whose files are in `temp_dir`."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "raylet" and str(temp_dir) in cmdline:
            return proc
    raise LookupError(f"no raylet with {temp_dir} on its command line")


def _parts(folder: Path) -> list[Path]:
    return list(folder.glob("*.parquet")) if folder.exists() else []


def test_a_trial_whose_node_dies_resumes_on_a_surviving_node(tmp_path):
    spec = study_file(tmp_path, trials=2, seeds="[1]", epochs=12)
    with loopback_cluster(tmp_path, shared_temp_dir=False, mlflow_server=False) as nodes:
        env = nodes.env | {"PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "ablate.cli", "search", str(spec), "--address", nodes.gcs]
        driver = subprocess.Popen(
            command, cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        parts = tmp_path / "results/nl/parts"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(_parts(parts)) < 2 and driver.poll() is None:
            time.sleep(0.2)  # both trials (one per node) have a checkpoint
        assert len(_parts(parts)) == 2, "the trials never both reported"
        raylet = _raylet_of(nodes.worker_temp)
        os.kill(raylet.pid, signal.SIGKILL)  # the worker node is gone, mid-trial
        out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-6000:]
    assert "2 completed, 0 pruned, 0 failed" in out, out[-4000:]
    assert "lost its Ray worker" in out  # said so, and resumed
    runs, rows = assert_nothing_lost(tmp_path, trials=2, seeds=1, epochs=12)
    assert {r.data.tags["ablate.status"] for r in runs["trial"]} == {"completed"}
    assert {r["status"] for r in rows} == {"completed"}
    # both trials ended on the surviving node, and MLflow says so for the one that moved
    assert len({r.data.tags["ablate.node"] for r in runs["trial"]}) == 1
    assert not (tmp_path / "results/nl/failures").exists()  # the lost node cost no retry
