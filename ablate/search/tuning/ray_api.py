"""Every Ray API the Tune seam uses, imported here and only here: the one list to read when
Ray's upper bound in pyproject.toml moves (`ray[tune]<2.61`). The other modules of
`ablate.search.tuning` take Ray from this module."""

from __future__ import annotations

import ray
import ray.tune.schedulers as tune_schedulers
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper
from ray.util import get_node_ip_address as node_ip

__all__ = [
    "ConcurrencyLimiter",
    "JsonLoggerCallback",
    "OptunaSearch",
    "Stopper",
    "TrialScheduler",
    "node_ip",
    "ray",
    "tune",
    "tune_schedulers",
]
