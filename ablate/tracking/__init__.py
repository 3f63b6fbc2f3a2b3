"""Tracking a study in MLflow: `runs` (the only module importing MLflow: study, trial and seed
runs, log_batch), `reading` (what `ablate report` and `ablate ui` read back), `retry`
(transient errors only, with backoff), `spool` (calls that wait for an unreachable MLflow,
replayed by `ablate sync`), `stores` (the default store, local store paths, the MLflow UI's
command and links) and `outbox` (calls made by a background thread, off the training thread).
The names the rest of ablate uses are exported here."""

from __future__ import annotations

from ablate.tracking.outbox import Outbox
from ablate.tracking.reading import (
    download,
    latest_study_run,
    log_folder,
    run_params,
    seed_runs,
    study_names,
)
from ablate.tracking.retry import is_transient
from ablate.tracking.runs import (
    NODE_IP_TAG,
    NODE_TAG,
    PARENT,
    ROLE,
    SEED,
    STATUS,
    TRIAL_ID,
    TRIAL_KEY,
    Tracker,
    check_reachable,
    run_name,
    seed_of,
)
from ablate.tracking.spool import is_stand_in
from ablate.tracking.stores import (
    default_tracking_uri,
    is_local_store,
    local_store_path,
    ui_command,
    ui_links,
)

__all__ = [
    "NODE_IP_TAG",
    "NODE_TAG",
    "PARENT",
    "ROLE",
    "SEED",
    "STATUS",
    "TRIAL_ID",
    "TRIAL_KEY",
    "Outbox",
    "Tracker",
    "check_reachable",
    "default_tracking_uri",
    "download",
    "is_local_store",
    "is_stand_in",
    "is_transient",
    "latest_study_run",
    "local_store_path",
    "log_folder",
    "run_name",
    "run_params",
    "seed_of",
    "seed_runs",
    "study_names",
    "ui_command",
    "ui_links",
]
