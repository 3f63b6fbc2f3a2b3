"""Every shipped search space runs one short trial with the small-backbone override (no Ray:
`ablate.search.trial_body.run` is the same body a Ray trial runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate import spec as specs
from ablate.search import trial_body
from ablate.tracking import Tracker

REPO = Path(__file__).resolve().parents[2]
SMALL = ["backbone=tiny_clip", "dataset=tiny_mnist", "train.epochs=1", "dataset.shots=2"]
FITS_TINY_CLIP = {"pmpo_depth_partition.yaml": ["method.depth=4"]}  # written for ViT-B/16


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name
)
def test_each_shipped_search_space_runs_a_short_trial(path, in_tmp):
    spec = specs.load(path)
    small = [o for o in SMALL if not (spec.datasets and o.startswith("dataset="))]  # a suite's
    spec.extra_overrides = small + FITS_TINY_CLIP.get(path.name, [])
    first = {p.key: p.probe_values()[0] for p in spec.search_parameters()}
    tracker = Tracker(f"sqlite:///{in_tmp / 'mlflow.db'}").start_study(spec.name, "", {}, {})
    reports: list[dict[str, float]] = []
    ctx = trial_body.TrialContext("t0", "t000", in_tmp / "results", tracker)
    trial_body.run(spec, first, lambda metrics, state: reports.append(metrics), ctx)
    assert [r["epoch"] for r in reports] == [1]
    assert 0 <= reports[0]["val/hm"] <= 100
