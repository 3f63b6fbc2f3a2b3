"""A node lost mid-study: two Ray nodes on loopback (1 CPU each), the worker node's raylet and
its workers killed with SIGKILL while a trial trains there, as when a machine goes. The trial
resumes from its last checkpoint on the surviving node and completes; the lost node costs no
retry and no cell is lost or repeated."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from ablate.search import replay
from tests.e2e.test_cluster import loopback_cluster
from tests.e2e.test_file_faults import replayed_study
from tests.e2e.test_resume import assert_nothing_lost

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
    # replayed epochs paced at 0.5 s: the trial on the worker node is still training when its
    # node goes, however fast this machine trains (real tiny epochs take 0.1 s)
    command, env = replayed_study(tmp_path, epochs=12, lengths=(1,))
    paced = {replay.ENV: env[replay.ENV], replay.PACE_ENV: "0.5"}
    with loopback_cluster(tmp_path, False, mlflow_server=False, node_env=paced) as nodes:
        env = nodes.env | paced | {"PYTHONPATH": str(REPO)}
        driver = subprocess.Popen(
            [*command, "--address", nodes.gcs], cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        parts = tmp_path / "results/ff/parts"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(_parts(parts)) < 2 and driver.poll() is None:
            time.sleep(0.1)  # both trials (one per node) have a checkpoint
        assert len(_parts(parts)) == 2, "the trials never both reported"
        raylet = _raylet_of(nodes.worker_temp)
        for proc in [raylet, *raylet.children(recursive=True)]:  # the node is gone, mid-trial
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-6000:]
    assert "2 completed, 0 pruned, 0 failed" in out, out[-4000:]
    assert "lost its Ray worker" in out, out[-6000:]  # said so, and resumed
    runs, rows = assert_nothing_lost(tmp_path, trials=2, seeds=1, epochs=12, name="ff")
    assert {r.data.tags["ablate.status"] for r in runs["trial"]} == {"completed"}
    assert {r["status"] for r in rows} == {"completed"}
    # both trials ended on the surviving node, and MLflow says so for the one that moved
    assert len({r.data.tags["ablate.node"] for r in runs["trial"]}) == 1
    assert not (tmp_path / "results/ff/failures").exists()  # the lost node cost no retry
