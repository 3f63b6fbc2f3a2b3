"""Real faults on a real study: a second launch while one runs, and SIGTERM (what Kubernetes,
Slurm and `ray job stop` send) to the driver; then the same command finishes every cell once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.e2e.test_resume import assert_nothing_lost, runs_by_role, search_command, study_file

pytestmark = pytest.mark.slow


def test_a_second_launch_is_refused_and_sigterm_stops_cleanly_then_resumes(tmp_path):
    spec = study_file(tmp_path, trials=2, seeds="[1, 2]", epochs=20)
    command, env = search_command(spec)
    first = subprocess.Popen(
        command, cwd=tmp_path, env=env, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    owner = tmp_path / "results/nl/owner.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not owner.exists():  # taken before Ray starts
        time.sleep(0.1)
    assert owner.exists(), "the first launch never took the study"

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "study 'nl' is already running" in second.stderr
    assert f"pid {first.pid}" in second.stderr

    parts = tmp_path / "results/nl/parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (parts.exists() and any(parts.iterdir())):
        if first.poll() is not None:  # it ended without a result
            break
        time.sleep(0.1)
    if not parts.exists():  # say why: the first launch's own output
        first.kill()
        raise AssertionError(f"the study never wrote a result:\n{first.communicate()[0][-4000:]}")
    os.kill(first.pid, signal.SIGTERM)  # the driver only: Ray must be stopped by it
    out, _ = first.communicate(timeout=300)
    if first.returncode == 0:
        pytest.skip("the study finished before SIGTERM arrived")  # a very fast machine
    assert first.returncode == 143, out[-3000:]
    assert "stopped by SIGTERM; run the same command again to resume" in out
    assert "PC: @" not in out and "*** SIGTERM received" not in out  # no native stack dump
    assert not (tmp_path / "results/nl/owner.json").exists()  # the lock was let go

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the interrupted study 'nl'" in again.stdout
    runs, _ = assert_nothing_lost(tmp_path, trials=2, seeds=2, epochs=20)
    assert len(runs_by_role(tmp_path)["study"]) == 1  # the second launch created nothing
