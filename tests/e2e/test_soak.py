"""The soak (benchmarks/soak.py) at a small size: 8 replayed trials of which 3 have faults
injected (one raises at epoch 2, two have a NaN loss at epoch 1 or 2), `retries: 1`, and the
MLflow server restarted once mid-study. Exactly the injected trials fail, each after its retry
and with its error; every cell of the others is in MLflow and results.parquet exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_a_small_soak_loses_and_repeats_nothing(tmp_path):
    folder, figures_file = tmp_path / "soak", tmp_path / "figures.json"
    command = [sys.executable, str(REPO / "benchmarks/soak.py"), "--trials", "8", "--epochs", "3",
               "--restarts", "1", "--faults", "raise:0.3,nan:0.15", "--retries", "1",
               "--folder", str(folder), "--json", str(figures_file)]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    log = (folder / "search.log").read_text()
    assert figures["exit_code"] == 0, log[-4000:]
    assert figures["server_restarts"] == 1
    assert (figures["injected_raise"], figures["injected_nan"]) == (1, 2)
    assert figures["failures_recorded"] == figures["failures_with_error"] == 3
    assert figures["failures_recorded_are_injected"] and figures["failed_rows_stamped"]
    assert "5 completed, 0 pruned, 3 failed" in figures["summary"]
    assert figures["cells_expected"] == 5 * 2 * 3
    for key in ("lost_mlflow", "duplicated_mlflow", "lost_parquet", "duplicated_parquet"):
        assert figures[f"cells_{key}"] == 0, key
    assert figures["trial_runs_duplicated"] == figures["runs_left_running"] == 0
    assert figures["calls_left_in_spool"] == 0  # whatever waited was delivered at the end
    # each failed trial was retried once from its checkpoint, then gave up with the same error
    errors = [p.read_text().splitlines() for p in (folder / "results/soak/failures").iterdir()]
    assert sorted(len(lines) for lines in errors) == [2, 2, 2]
    assert all(lines[0] == lines[1] for lines in errors)
    assert "InjectedFault" in log and "TrainingDiverged: train/loss became nan" in log
