"""Study files: the model (`model`), loading with file:line positions and validation
(`validate`), and the composition of every trial the file asks for (`check_trials`)."""

from __future__ import annotations

from ablate.spec.model import (
    DISTRIBUTIONS,
    TOP_KEYS,
    VARIANT_KEY,
    Parameter,
    Scheduler,
    StudySpec,
    describe_plan,
    thaw,
)
from ablate.spec.validate import load

__all__ = [
    "DISTRIBUTIONS",
    "TOP_KEYS",
    "VARIANT_KEY",
    "Parameter",
    "Scheduler",
    "StudySpec",
    "describe_plan",
    "load",
    "thaw",
]
