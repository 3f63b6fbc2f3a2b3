"""A trial's worker imports MLflow on its tracking thread, not while it unpickles the trial."""

from __future__ import annotations

import subprocess
import sys

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from ablate.tracking import runs


def test_what_a_trials_worker_imports_leaves_mlflow_out():
    check = "import sys, ablate.search.tuning.trainable; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_tags_spelled_out_are_mlflows():
    assert (runs.PARENT, runs.NOTE) == (MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE)
