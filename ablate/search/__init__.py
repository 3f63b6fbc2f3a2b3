"""One study from start to summary: the driver (`driver`: plan, MLflow parent run, study.json,
summary, `ablate sync`), the Ray Tune seam (`tuning/`, the only package importing ray.tune), the
Optuna seam (`space`), the Ray-free trial body (`trial_body`), a study's memory across
invocations (`resume`) and what its trials came to (`outcome`). Importing this package, or
`resume` to read a study's state, imports neither Ray Tune nor torch."""

from __future__ import annotations

from ablate.search.resume import StudyState, load_state

__all__ = ["StudyState", "load_state"]
