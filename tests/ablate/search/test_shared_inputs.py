"""A Ray worker reused for the next trial keeps the backbone, dataset and frozen features."""

from __future__ import annotations

import dataclasses

import trainers
from ablate import config
from ablate.search.trial_body import shared_inputs


def test_the_next_trial_on_the_same_backbone_and_data_reuses_what_the_last_one_loaded():
    cfg = config.compose(["method=coop", "dataset=digits", "train.device=cpu"])
    backbone, task, frozen = shared_inputs(cfg)
    other_lr = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.5), seed=9)
    assert shared_inputs(other_lr) == (backbone, task, frozen)  # the very same objects

    searched = dataclasses.replace(cfg.dataset, template="a {}.", batch_size=4)
    assert shared_inputs(dataclasses.replace(cfg, dataset=searched))[1:] == (task, frozen)

    fewer = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, shots=2))
    same_backbone, new_task, new_frozen = shared_inputs(fewer)
    assert same_backbone is backbone and new_task is not task and new_frozen is not frozen

    bf16 = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, precision="bf16"))
    assert shared_inputs(bf16)[0] is not backbone  # one backbone kept at a time


def test_speed_knobs_keep_a_trials_key_so_finished_cells_are_reused():
    from ablate.search.cells import trial_key

    cfg = config.compose(["method=coop", "dataset=digits"])
    faster = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, fuse_seeds=False, cache_frozen=False, threads=2)
    )
    assert trial_key(faster) == trial_key(cfg) == trial_key(cfg.with_seed(7))
    other_lr = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.5))
    assert trial_key(other_lr) != trial_key(cfg)


def test_a_methods_new_revision_changes_the_key_so_old_cells_are_retrained(monkeypatch):
    from ablate.search.cells import trial_key

    cfg = config.compose(["method=coop", "dataset=digits"])
    other = config.compose(["method=maple", "dataset=digits"])
    before = trial_key(cfg), trial_key(other)
    coop = trainers.get_method("coop")
    monkeypatch.setattr(coop, "revision", coop.revision + 1)
    assert trial_key(cfg) != before[0]
    assert trial_key(other) == before[1]  # other methods' cells are kept
