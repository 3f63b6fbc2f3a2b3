"""Ray Tune lives here and only here (the one package importing ray.tune): `runner` (run_study:
Tuner or restore, OptunaSearch with trials named by Optuna's number, the schedulers table, the
outcome), `trainable` (the checkpointed adapter around the Ray-free trial body, per-trial
resources with `gpu: auto` probes), `callbacks` (statuses and node tags, the all-fail stop, the
pending notice) and `connection` (join or start Ray, let go of it, -q / -v for Ray and Tune).
The driver's calls are exported here."""

from __future__ import annotations

from ablate.search.tuning.callbacks import PendingNotice, StatusCallback
from ablate.search.tuning.connection import (
    can_restore,
    connect,
    disconnect,
    reenter_working_dir,
)
from ablate.search.tuning.runner import (
    NumberedOptunaSearch,
    make_scheduler,
    run_study,
    trained_configs,
)

# Tune pickles the searcher and the callbacks with a study's experiment (tuner.pkl), by class
# path: a study interrupted before tuning/ was a package restores through its old names.
_NumberedOptunaSearch = NumberedOptunaSearch
_StatusCallback = StatusCallback

__all__ = [
    "PendingNotice",
    "can_restore",
    "connect",
    "disconnect",
    "make_scheduler",
    "reenter_working_dir",
    "run_study",
    "trained_configs",
]
