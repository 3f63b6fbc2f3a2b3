"""The training loop, few-shot sampling and the digits task."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from trainers import TrainConfig, TrainingDiverged, TrialConfig, fit
from trainers.configs import DataConfig, OptimConfig
from trainers.data import sample_few_shot
from trainers.engine import learning_rate
from trainers.methods.coop import CoOpConfig


def cfg(**optim) -> TrialConfig:
    return TrialConfig(
        method=CoOpConfig(prompt_length=4),
        dataset=DataConfig(shots=4, batch_size=8, template="a photo of the number {}."),
        optim=OptimConfig(warmup_epochs=0, **({"lr": 0.05} | optim)),
        train=TrainConfig(epochs=2),
    )


def test_fit_reports_every_epoch_and_the_test_split_at_the_end(tiny_backbone, digits):
    epochs = list(fit(cfg(), tiny_backbone, digits))
    assert [e.epoch for e in epochs] == [1, 2]
    for key in ("train/loss", "train/lr", "val/base", "val/new", "val/hm"):
        assert key in epochs[0].metrics
    assert "test/hm" not in epochs[0].metrics and "test/hm" in epochs[1].metrics
    m = epochs[1].metrics
    assert 0 <= m["val/base"] <= 100
    assert m["val/hm"] == pytest.approx(
        2 * m["val/base"] * m["val/new"] / (m["val/base"] + m["val/new"])
    )


def test_same_seed_same_metrics_alone_or_in_lockstep(tiny_backbone, digits):
    alone = [e.metrics for e in fit(cfg(), tiny_backbone, digits)]
    other = fit(cfg().with_seed(2), tiny_backbone, digits)
    together = [a.metrics for a, _ in zip(fit(cfg(), tiny_backbone, digits), other)]
    assert alone == together


def test_training_changes_the_prompts(tiny_backbone, digits):
    first = next(iter(fit(cfg(), tiny_backbone, digits)))
    init = CoOpConfig(prompt_length=4)
    assert first.method.ctx.shape == (init.prompt_length, tiny_backbone.dims.text_width)
    run = fit(cfg(), tiny_backbone, digits)
    before = next(run).method.ctx.detach().clone()
    after = next(run).method.ctx.detach()
    assert not torch.equal(before, after)


def test_a_diverging_loss_raises(tiny_backbone, digits):
    with pytest.raises(TrainingDiverged, match="loss became"):
        list(fit(cfg(lr=1e30), tiny_backbone, digits))


def test_cosine_schedule_with_constant_warmup():
    c = TrialConfig(
        method=CoOpConfig(), optim=OptimConfig(lr=0.1, warmup_epochs=1), train=TrainConfig(epochs=4)
    )
    assert learning_rate(c, 0) == c.optim.warmup_lr
    assert learning_rate(c, 1) == pytest.approx(0.05 * (1 + 0.7071067811865476))
    assert learning_rate(c, 2) == pytest.approx(0.05)


def test_step_schedule_decays_at_its_milestones():
    """MoPE's MultiStepLR(milestones=[3, 6], gamma=0.4), stepped once per epoch from 0."""
    optim = OptimConfig(lr=4e-4, warmup_epochs=0, schedule="step", milestones=[3, 6], gamma=0.4)
    c = TrialConfig(method=CoOpConfig(), optim=optim, train=TrainConfig(epochs=10))
    expected = [4e-4] * 3 + [1.6e-4] * 3 + [6.4e-5] * 4
    assert [learning_rate(c, e) for e in range(10)] == pytest.approx(expected)


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optim_optimizer_picks_the_optimiser(name, kind, tiny_backbone, digits):
    run = fit(cfg(optimizer=name, weight_decay=1e-3), tiny_backbone, digits)
    optimizer = next(run).optimizer
    assert type(optimizer) is kind
    assert optimizer.param_groups[0]["weight_decay"] == 1e-3


def test_bad_optimiser_settings_are_rejected():
    with pytest.raises(ValueError, match="optim.optimizer must be one of"):
        OptimConfig(optimizer="adam")
    with pytest.raises(ValueError, match="optim.schedule must be one of"):
        OptimConfig(schedule="linear")
    with pytest.raises(ValueError, match="optim.milestones"):
        OptimConfig(schedule="step", milestones=[0])


def test_digits_task_is_split_base_to_new(digits):
    assert digits.classnames[:3] == ["zero", "one", "two"]
    assert list(digits.base_classes) == [0, 1, 2, 3, 4]
    assert list(digits.new_classes) == [5, 6, 7, 8, 9]
    total = len(digits.train) + len(digits.val) + len(digits.test)
    assert total == 1797
    assert digits.train.images.shape[1:] == (3, 8, 8)
    new = digits.test.of_classes(digits.new_classes)
    assert new.labels.min() == 0 and new.labels.max() == 4


def test_few_shot_sampling_is_deterministic_per_seed(digits):
    a = sample_few_shot(digits.train.labels, digits.base_classes, 4, seed=1)
    b = sample_few_shot(digits.train.labels, digits.base_classes, 4, seed=1)
    c = sample_few_shot(digits.train.labels, digits.base_classes, 4, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(digits.train.labels[a], minlength=10)
    assert counts.tolist() == [4] * 5 + [0] * 5


def test_importing_trainers_imports_no_orchestration_library():
    code = (
        "import sys, trainers; "
        "print(sorted({'ray','mlflow','hydra','optuna','pyarrow'} & "
        "{m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resuming_from_a_state_continues_exactly(tiny_backbone, digits):
    straight = [e.metrics for e in fit(cfg(), tiny_backbone, digits)]
    first = next(iter(fit(cfg(), tiny_backbone, digits)))
    state = first.state()
    resumed = [e.metrics for e in fit(cfg(), tiny_backbone, digits, resume=state)]
    assert len(resumed) == 1
    assert resumed[0] == straight[1]


def test_unreadable_checkpoints_are_refused_before_training(tmp_path):
    from trainers.backbone import BackboneError, check
    from trainers.configs import BackboneConfig

    junk = tmp_path / "model.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(BackboneError, match="is not a PyTorch checkpoint"):
        check(BackboneConfig(model="ablate-tiny", pretrained=str(junk)))
    junk = junk.rename(tmp_path / "model.safetensors")
    with pytest.raises(BackboneError, match="not a readable safetensors file"):
        check(BackboneConfig(model="ablate-tiny", pretrained=str(junk)))


def test_evaluation_scores_new_classes_on_new_images(tiny_backbone, digits):
    """Regression: prepared splits were cached by tensor address, and an equal-sized new split
    could be served the base split's images."""
    from trainers.evaluation import ImagePrep

    prep = ImagePrep(tiny_backbone, torch.device("cpu"))
    base = prep(digits.val.of_classes(digits.base_classes), key=("val", "base"))
    new = prep(digits.val.of_classes(digits.new_classes), key=("val", "new"))
    expected = prep(digits.val.of_classes(digits.new_classes))
    assert torch.equal(new.images, expected.images)
    assert not torch.equal(base.images[: len(new)], new.images[: len(base)])
