"""What the scheduler learned: pruned trials enter the report at matched fidelity (issue 17,
item 3). The study of the issue: ASHA pruned every trial with one expert at epochs 1-2, so every
completed trial has num_experts=2; the report must still rank num_experts, not score it 0."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ablate import report
from ablate.report import fidelity, learned
from tests.ablate.report.test_report import _row, write_study

ASHA = {"type": "asha", "max_epochs": 9, "grace_epochs": 1, "reduction_factor": 3.0}


def experts_rows(rng: np.random.Generator) -> list[dict]:
    """12 trials, 2 seeds: num_experts=1 is 8 points behind and is pruned at epoch 1 or 3 (the
    ASHA rungs); the four num_experts=2 trials complete 9 epochs; lr matters a little."""
    rows = []
    for t in range(12):
        experts = 2 if t < 4 else 1
        lr = [0.001, 0.01, 0.1][t % 3]
        last = 9 if experts == 2 else (1 if t % 2 else 3)
        for seed in (1, 2):
            for epoch in range(1, last + 1):
                level = 50 + 8 * experts + 2 * math.log10(lr) + epoch + rng.normal(0, 0.3)
                row = _row(f"t{t:03d}", f"e{t}", seed, epoch,
                           "completed" if last == 9 else "pruned", level)  # fmt: skip
                rows.append(row | {"method.num_experts": experts, "optim.lr": lr})
    return rows


@pytest.fixture(scope="module")
def experts(tmp_path_factory) -> tuple[report.Analysis, object]:
    folder = write_study(
        tmp_path_factory.mktemp("e") / "mope", experts_rows(np.random.default_rng(3))
    )
    info = report.StudyInfo("mope", folder, scheduler=ASHA)
    out = report.make_report(info, "fanova")
    return report.analyse(info), out


def test_rungs_follow_the_scheduler_of_the_spec():
    assert fidelity.scheduler_rungs(ASHA, 9, [])[0] == [1, 3, 9]
    assert fidelity.scheduler_rungs(ASHA | {"max_epochs": 0}, 5, [])[0] == [1, 3, 5]
    hyperband = {"type": "hyperband", "max_epochs": 9, "reduction_factor": 3.0}
    assert fidelity.scheduler_rungs(hyperband, 9, [])[0] == [1, 3, 9]
    median = {"type": "median", "max_epochs": 0, "grace_epochs": 2}
    assert fidelity.scheduler_rungs(median, 4, [])[0] == [2, 3, 4]
    rungs, source = fidelity.scheduler_rungs(None, 6, [2, 1, 2])
    assert rungs == [1, 2, 6] and "pruned trials stopped" in source


def test_eta_squared_on_known_numbers():
    # levels a: 1, 3 (mean 2); b: 5, 7 (mean 6); grand mean 4: between 16, total 20
    assert fidelity.eta_squared({"a": [1.0, 3.0], "b": [5.0, 7.0]}) == pytest.approx(0.8)
    assert fidelity.eta_squared({"a": [2.0], "b": [2.0]}) == 0.0


def test_a_factor_pruned_away_is_ranked_at_the_rungs_not_scored_zero(experts):
    data, out = experts
    learned_ = data.fidelity
    assert learned_.pruned_only == ["method.num_experts"]
    # the highest rung at which num_experts still takes two values: 4 completed + 4 pruned there
    assert learned_.importance_epoch == 3
    first = {f.factor: f for f in learned_.rungs[0].factors}["method.num_experts"]
    assert learned_.rungs[0].trials == 12 and [n for _, _, n in first.levels] == [8, 4]
    assert first.share > 0.8  # 8 points between levels against 2 points of lr
    late = {f.factor: f for f in learned_.rungs[-1].factors}["method.num_experts"]
    assert learned_.rungs[-1].epoch == 9 and math.isnan(late.share)
    saved = json.loads((out / "importance.json").read_text())
    assert saved["epoch"] == 3 and saved["trials"] == 8
    assert saved["scores"]["method.num_experts"] > saved["scores"]["optim.lr"]
    assert saved["scores"]["method.num_experts"] > 0.5
    page = (out / "report.html").read_text()
    assert (
        "What the scheduler learned" in page
        and "Varies only among pruned trials: num_experts" in page
    )
    rungs_md = (out / "scheduler_rungs.md").read_text()
    assert "| 1 | 12 | 4 | num_experts |" in rungs_md


def test_every_configuration_at_the_epoch_all_reached(experts):
    data, out = experts
    common = data.common
    assert common is not None and len(common.configs) == 6  # 2 experts x 3 learning rates
    assert "at epoch 3, the highest all 6 configurations reached" in common.at
    assert "method.num_experts" in common.factors  # the completed-only table drops it
    assert "method.num_experts" not in data.table.factors
    md = (out / "ablation_common_epoch.md").read_text()
    assert "at epoch 3, the highest all 6 configurations reached" in md
    assert common.configs[0].factors["method.num_experts"] == 2  # the best at epoch 3


def test_a_factor_constant_at_the_common_rung_is_not_estimable():
    """Rungs from the spec start at 3 but the pruned trials stopped at 2: the factor only they
    vary is reported as not estimable, never as an importance of 0."""
    curves = {}
    for t in range(6):
        pruned = t >= 3
        curve = {e: 50.0 + e + t for e in range(1, (2 if pruned else 5) + 1)}
        row = {"k": 1 if pruned else 2, "lr": [0.1, 0.2, 0.3][t % 3]}
        curves[f"t{t}"] = {"status": "pruned" if pruned else "completed", "key": str(t),
                           "row": row, "curve": curve}  # fmt: skip
    spec = {"type": "asha", "max_epochs": 5, "grace_epochs": 3, "reduction_factor": 3.0}
    found = fidelity.analyse(curves, ["k", "lr"], spec)
    assert [r.epoch for r in found.rungs] == [3, 5]
    assert found.not_estimable == {"k": "varies only among pruned trials"}
    assert fidelity.status_of(found, "k", 0.0) == "not estimable (varies only among pruned trials)"
    assert fidelity.status_of(found, "lr", 0.25) == "0.25"


def test_records_at_a_rung_hold_every_trial_that_reached_it(experts):
    data, _ = experts
    at_three = learned.records(data, 3)
    reached = [n for n, t in data.curves.items() if 3 in t["curve"]]
    assert sorted(r.attrs["trial_name"] for r in at_three) == sorted(reached)
    assert all(r.state == "completed" and r.value is not None for r in at_three)
