"""Training-image augmentation (dataset.augment=crop_flip): the crops themselves, that training
sees them instead of cached features, and that a trial stays reproducible with them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.trainers.same_result import assert_same_metrics
from trainers import TrainConfig, TrialConfig, fit, fit_seeds
from trainers.configs import DataConfig, OptimConfig
from trainers.data import check
from trainers.data.augment import RATIO, crop_box, crop_flip, views
from trainers.frozen import FrozenFeatures
from trainers.methods.coop import CoOpConfig


def trial(augment: str = "crop_flip", fuse: bool = True, seed: int = 1) -> TrialConfig:
    return TrialConfig(
        method=CoOpConfig(prompt_length=4),
        dataset=DataConfig(
            shots=4, batch_size=8, template="a photo of the number {}.", augment=augment
        ),
        optim=OptimConfig(warmup_epochs=0, lr=0.05),
        train=TrainConfig(epochs=2, fuse_seeds=fuse),
        seed=seed,
    )


# ---- the crops --------------------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40), (224, 224)])
def test_crops_lie_inside_the_image_with_the_drawn_area_and_aspect(height, width):
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop_box(height, width, 0.08, gen)
        assert top >= 0 and left >= 0
        assert top + h <= height and left + w <= width
        if (h, w) != (height, width):  # not the fallback: the drawn area and aspect, rounded
            assert h * w >= 0.08 * height * width - (h + w + 1)
            assert RATIO[0] - 2 / min(h, w) <= w / h <= RATIO[1] + 2 / min(h, w)


def test_crops_vary_in_size_and_place():
    gen = torch.Generator().manual_seed(0)
    boxes = {crop_box(32, 32, 0.08, gen) for _ in range(50)}
    assert len(boxes) > 40
    assert min(h * w for _, _, h, w in boxes) < 0.3 * 32 * 32  # small crops do occur


def test_a_full_scale_crop_of_a_square_image_is_the_image_resized_maybe_flipped():
    images = torch.rand(6, 3, 28, 28)
    out = crop_flip(images, 32, min_scale=1.0, generator=torch.Generator().manual_seed(3))
    resized = F.interpolate(images, size=(32, 32), mode="bicubic", antialias=True)
    flipped = [torch.allclose(o, r.flip(-1)) for o, r in zip(out, resized)]
    kept = [torch.allclose(o, r) for o, r in zip(out, resized)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)  # both outcomes of the coin occur in six draws


def test_views_are_a_function_of_seed_and_epoch():
    images = torch.rand(4, 3, 28, 28)

    def draw(seed: int, epoch: int) -> torch.Tensor:
        return crop_flip(images, 32, 0.08, views(seed, epoch))

    assert torch.equal(draw(1, 1), draw(1, 1))
    assert not torch.allclose(draw(1, 1), draw(2, 1))
    assert not torch.allclose(draw(1, 1), draw(1, 2))


# ---- training with them -------------------------------------------------------------------------
def test_augmented_training_is_reproducible(tiny_backbone, digits):
    a = list(fit(trial(), tiny_backbone, digits))
    b = list(fit(trial(), tiny_backbone, digits))
    assert [e.metrics for e in a] == [e.metrics for e in b]
    assert torch.equal(a[-1].method.ctx, b[-1].method.ctx)


def test_training_sees_the_views_not_the_stored_images(tiny_backbone, digits):
    augmented = next(iter(fit(trial("crop_flip"), tiny_backbone, digits)))
    plain = next(iter(fit(trial("none"), tiny_backbone, digits)))
    assert augmented.metrics["train/loss"] != pytest.approx(plain.metrics["train/loss"], rel=1e-3)
    assert not torch.allclose(augmented.method.ctx, plain.method.ctx)


@pytest.mark.parametrize(("augment", "train_rows_cached"), [("crop_flip", False), ("none", True)])
def test_augmented_images_never_come_from_the_frozen_cache(
    augment, train_rows_cached, tiny_backbone, digits
):
    """Training images' features are computed every step; evaluation images' stay cached
    (the `none` row is the control: there the training images are cached too)."""
    frozen = FrozenFeatures()
    list(fit(trial(augment), tiny_backbone, digits, frozen=frozen))
    train_keys = [k for k in frozen._rows if k[1] == "train"]
    assert bool(train_keys) == train_rows_cached
    assert sum(k[1] == "val" for k in frozen._rows) == len(digits.val)
    assert frozen.reused > 0  # the second epoch's validation reused the first's


def test_fused_seeds_each_keep_their_own_views(tiny_backbone, digits):
    seeds = (1, 2, 3)
    fused = list(fit_seeds(trial(fuse=True), seeds, tiny_backbone, digits))
    for i, seed in enumerate(seeds):
        alone = list(fit(trial(fuse=False, seed=seed), tiny_backbone, digits))
        for a, b in zip([epoch[i] for epoch in fused], alone):
            assert_same_metrics(a.metrics, b.metrics, digits)
        torch.testing.assert_close(fused[-1][i].method.ctx, alone[-1].method.ctx, atol=1e-5, rtol=0)


def test_resuming_an_augmented_run_continues_exactly(tiny_backbone, digits):
    straight = [e.metrics for e in fit(trial(), tiny_backbone, digits)]
    state = next(iter(fit(trial(), tiny_backbone, digits))).state()
    resumed = [e.metrics for e in fit(trial(), tiny_backbone, digits, resume=state)]
    assert resumed == straight[1:]


def test_fusion_datasets_refuse_augmentation():
    problems = check(DataConfig(name="upmc_food101", augment="crop_flip"))
    assert any("dataset.augment=crop_flip is not implemented" in p for p in problems)
    plain = check(DataConfig(name="upmc_food101"))
    assert not any("dataset.augment" in p for p in plain)


def test_bad_augment_settings_are_rejected():
    with pytest.raises(ValueError, match="dataset.augment must be one of"):
        DataConfig(augment="flip")
    with pytest.raises(ValueError, match="dataset.crop_scale"):
        DataConfig(crop_scale=0.0)
    assert math.isclose(DataConfig().crop_scale, 0.08)
