"""Seeds fused into one forward/backward pass per step (train.fuse_seeds) learn what each seed
learns alone: same metrics and prompts up to float rounding, for every method."""

from __future__ import annotations

import pytest
import torch

import trainers
from tests.trainers.same_result import (
    FLIPS,
    assert_same_logits,
    assert_same_metrics,
    part_sizes,
    tolerance,
)
from tests.trainers.test_methods import small_config
from trainers import TrainConfig, TrialConfig, fit, fit_seeds
from trainers.configs import DataConfig, OptimConfig
from trainers.engine import word_embedder
from trainers.methods.stack import SeedStack
from trainers.metrics import harmonic_mean
from trainers.prompted_clip import PromptedCLIP

SEEDS = (1, 2, 3)


def trial(method: str, fuse: bool, dims) -> TrialConfig:
    return TrialConfig(
        method=small_config(method, dims),
        dataset=DataConfig(shots=4, batch_size=8, template="a photo of the number {}."),
        optim=OptimConfig(warmup_epochs=0, lr=0.05),
        train=TrainConfig(epochs=2, fuse_seeds=fuse),
    )


@pytest.mark.parametrize("method", trainers.list_methods())
def test_fused_seeds_learn_what_each_seed_learns_alone(method, tiny_backbone, digits):
    fused = list(fit_seeds(trial(method, True, tiny_backbone.dims), SEEDS, tiny_backbone, digits))
    for i, seed in enumerate(SEEDS):
        alone = list(
            fit(trial(method, False, tiny_backbone.dims).with_seed(seed), tiny_backbone, digits)
        )
        for epoch, (a, b) in enumerate(zip([f[i] for f in fused], alone), 1):
            assert a.epoch == b.epoch == epoch
            assert_same_metrics(a.metrics, b.metrics, digits)  # accuracies: up to FLIPS images
        learned, expected = fused[-1][i].method.state_dict(), alone[-1].method.state_dict()
        for name, tensor in learned.items():
            torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=0)
        template = trial(method, False, tiny_backbone.dims).dataset.template
        assert_same_logits(fused[-1][i].method, alone[-1].method, tiny_backbone, digits, template)


def test_seeds_differ_from_each_other(tiny_backbone, digits):
    """The stack must not tie the seeds' parameters together."""
    last = list(fit_seeds(trial("coop", True, tiny_backbone.dims), SEEDS, tiny_backbone, digits))[
        -1
    ]
    prompts = [m.method.state_dict()["ctx"] for m in last]
    assert not torch.allclose(prompts[0], prompts[1])
    assert not torch.allclose(prompts[1], prompts[2])


def test_fused_seeds_resume_from_unfused_states(tiny_backbone, digits):
    """States are per seed whichever way they trained: a trial can switch between the two."""
    first = next(fit_seeds(trial("maple", False, tiny_backbone.dims), SEEDS, tiny_backbone, digits))
    states = [m.state() for m in first]
    resumed = list(
        fit_seeds(trial("maple", True, tiny_backbone.dims), SEEDS, tiny_backbone, digits, states)
    )
    straight = list(
        fit_seeds(trial("maple", False, tiny_backbone.dims), SEEDS, tiny_backbone, digits)
    )
    assert [m.epoch for m in resumed[0]] == [2, 2, 2]
    for a, b in zip(resumed[-1], straight[-1]):  # fused vs unfused: equal up to rounding
        assert a.metrics["val/hm"] == pytest.approx(
            b.metrics["val/hm"], **tolerance("val/hm", digits)
        )
        assert a.metrics["train/loss"] == pytest.approx(b.metrics["train/loss"], rel=1e-4)


@pytest.mark.parametrize("method", trainers.list_methods())
def test_stacked_plan_gives_each_seed_block_its_own_logits(method, tiny_backbone):
    """One engine pass over [block 1; block 2] equals each seed's own pass over its block."""
    embed = word_embedder(tiny_backbone, torch.device("cpu"))
    config = small_config(method, tiny_backbone.dims)
    methods = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        methods.append(trainers.get_method(method)(config, tiny_backbone.dims, embed))
    template, names = "a photo of a {}.", ["zero", "one", "two"]
    size = tiny_backbone.dims.image_size
    images = torch.randn(6, 3, size, size)
    stacked, plan = PromptedCLIP(tiny_backbone, SeedStack(methods), template)(images, names)
    assert stacked.shape == (6, 3)
    assert len(plan.parts) == 2
    for i, m in enumerate(methods):
        alone, _ = PromptedCLIP(tiny_backbone, m, template)(images[3 * i : 3 * i + 3], names)
        torch.testing.assert_close(stacked[3 * i : 3 * i + 3], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["maple", "pmpo", "mope", "mpl"])
def test_fused_seeds_under_bf16_autocast(method, tiny_backbone, digits, monkeypatch):
    """The GPU path's dtypes (bf16 autocast), checked on the CPU: no dtype clash in the stacked
    plan or the per-seed logits, and the same result as seed by seed within bf16 noise."""
    from trainers import loop

    monkeypatch.setattr(
        loop, "autocast_context", lambda cfg, device: torch.autocast("cpu", torch.bfloat16)
    )
    dims = tiny_backbone.dims
    fused = list(fit_seeds(trial(method, True, dims), SEEDS[:2], tiny_backbone, digits))[-1]
    apart = list(fit_seeds(trial(method, False, dims), SEEDS[:2], tiny_backbone, digits))[-1]
    for a, b in zip(fused, apart):
        assert a.metrics["val/hm"] == pytest.approx(b.metrics["val/hm"], abs=2.0)
        assert a.metrics["train/loss"] == pytest.approx(b.metrics["train/loss"], rel=0.05)


def test_accuracies_may_differ_by_flipped_images_only(digits):
    """The tolerance of `assert_same_metrics`: FLIPS images per part, float for the rest."""
    sizes = part_sizes(digits, "test")
    one = {part: 100 / n for part, n in sizes.items()}
    same = {"test/base": 50.0, "train/loss": 1.0}
    assert_same_metrics(same, {"test/base": 50.0 + FLIPS * one["base"], "train/loss": 1.0}, digits)
    with pytest.raises(AssertionError, match="test/base"):
        assert_same_metrics(
            same, {"test/base": 50 + (FLIPS + 1) * one["base"], "train/loss": 1.0}, digits
        )
    with pytest.raises(AssertionError, match="train/loss"):
        assert_same_metrics(same, {"test/base": 50.0, "train/loss": 1.001}, digits)
    hm_tolerance = tolerance("test/hm", digits)["abs"]
    for b in range(0, 274, 7):  # FLIPS images flipped in both parts move hm within its bound
        for n in range(0, 272, 7):
            base, new = 100 * b / sizes["base"], 100 * n / sizes["new"]
            moved = harmonic_mean(base + FLIPS * one["base"], new + FLIPS * one["new"])
            assert abs(moved - harmonic_mean(base, new)) <= hm_tolerance
