"""Study files: the format declared once (`model`, read through `fields`), the scheduler and
sampler tables (`schedulers`, `samplers`), loading with file:line positions and validation
(`reading`, `validate`), the composition of every trial the file asks for (`check_trials`), and
the JSON Schema (`schema`)."""

from __future__ import annotations

from ablate.spec.model import (
    DISTRIBUTIONS,
    TOP_KEYS,
    VARIANT_KEY,
    Parameter,
    Scheduler,
    StudySpec,
    describe_plan,
    objectives_text,
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
    "objectives_text",
    "thaw",
]
