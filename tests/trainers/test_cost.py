"""Every epoch records what it cost: trainable parameters (exact), peak memory and time."""

from __future__ import annotations

import dataclasses

from tests.trainers.test_fused_seeds import trial
from trainers import fit_seeds


def last_epoch(cfg, backbone, task, seeds=(1, 2)):
    return list(fit_seeds(cfg, list(seeds), backbone, task))[-1]


def test_params_count_one_seeds_trainable_parameters_fused_or_apart(tiny_backbone, digits):
    fused = last_epoch(trial("coop", True, tiny_backbone.dims), tiny_backbone, digits)
    apart = last_epoch(trial("coop", False, tiny_backbone.dims), tiny_backbone, digits)
    counts = {m.costs["cost/params"] for m in fused + apart}
    cfg = trial("coop", True, tiny_backbone.dims).method
    # CoOp learns its n context vectors of the text width and nothing else
    assert counts == {float(cfg.prompt_length * tiny_backbone.dims.text_width)}


def test_a_knob_that_adds_prompts_adds_their_parameters(tiny_backbone, digits):
    def params(length: int) -> float:
        cfg = trial("coop", True, tiny_backbone.dims)
        cfg = dataclasses.replace(
            cfg, method=dataclasses.replace(cfg.method, prompt_length=length, init_text="")
        )
        return last_epoch(cfg, tiny_backbone, digits, seeds=(1,))[0].costs["cost/params"]

    assert params(8) - params(4) == 4 * tiny_backbone.dims.text_width


def test_memory_and_time_are_measured_every_epoch(tiny_backbone, digits):
    epochs = list(fit_seeds(trial("maple", True, tiny_backbone.dims), [1], tiny_backbone, digits))
    for (m,) in epochs:
        assert m.costs["cost/peak_mem_mb"] > 0
        assert m.costs["cost/epoch_s"] > 0


def test_a_study_may_search_on_each_cost_it_records(tiny_backbone, digits):
    from ablate.spec.model import COSTS

    (m,) = last_epoch(trial("coop", True, tiny_backbone.dims), tiny_backbone, digits, seeds=(1,))
    assert set(m.costs) == set(COSTS)
