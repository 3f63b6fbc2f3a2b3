"""Ray Tune lives here and only here (the one package importing ray.tune): `runner` (run_study:
Tuner or restore, OptunaSearch with trials named by Optuna's number, the schedulers table, the
outcome), `trainable` (the checkpointed adapter around the Ray-free trial body, per-trial
resources with `gpu: auto` probes), `callbacks` (statuses and node tags, the all-fail stop, the
pending notice) and `connection` (join or start Ray, let go of it, -q / -v for Ray and Tune).
The driver's calls are exported here."""

from __future__ import annotations

from ablate.search.tuning.callbacks import PendingNotice
from ablate.search.tuning.connection import (
    can_restore,
    connect,
    disconnect,
    reenter_working_dir,
)
from ablate.search.tuning.runner import run_study

__all__ = [
    "PendingNotice",
    "can_restore",
    "connect",
    "disconnect",
    "reenter_working_dir",
    "run_study",
]
