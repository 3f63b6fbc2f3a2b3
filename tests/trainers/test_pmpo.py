"""PMPO: depth partitions, the P + 1 ensemble, the single-prompt MaPLe limit, collapse check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.trainers.test_methods import CLASSES, TEMPLATE, build, images
from trainers.methods import Conditioning
from trainers.methods.maple import MaPLeConfig
from trainers.methods.pmpo import PMPOConfig


@pytest.mark.parametrize(
    ("num_prompts", "depth", "partition", "owners"),
    [
        (4, 12, "even", [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]),
        (5, 12, "even", [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]),
        (3, 12, [0, 2, 10], [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2]),
        (1, 9, "even", [0] * 9),
        (2, 2, [0, 1], [0, 1]),
    ],
)
def test_each_prompt_owns_one_contiguous_range(num_prompts, depth, partition, owners):
    cfg = PMPOConfig(num_prompts=num_prompts, depth=depth, partition=partition)
    assert cfg.owners() == owners


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_prompts": 3, "depth": 12, "partition": [0, 4]}, "method.partition: expected 3"),
        ({"num_prompts": 2, "depth": 12, "partition": [1, 4]}, "method.partition"),
        ({"num_prompts": 2, "depth": 12, "partition": [0, 0]}, "method.partition"),
        ({"num_prompts": 2, "depth": 4, "partition": [0, 4]}, "method.partition"),
        ({"partition": "uneven"}, "method.partition must be 'even'"),
        ({"partition": ["a"]}, "method.partition must be 'even' or a list"),
        ({"num_prompts": 5, "depth": 4}, "method.num_prompts"),
        ({"num_prompts": 0}, "method.num_prompts"),
        ({"depth": 0}, "method.depth"),
    ],
)
def test_bad_partitions_are_rejected_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PMPOConfig(**kwargs)


def test_depth_must_fit_the_vision_encoder(tiny_backbone):
    assert "method.depth" in PMPOConfig(num_prompts=2, depth=3).check(tiny_backbone.dims)[0]


def test_each_partition_takes_its_vision_prompts_from_its_own_text_prompt(tiny_backbone):
    model = build(tiny_backbone, PMPOConfig(num_prompts=2, depth=2, prompt_length=3))
    method = model.method
    plan = method.plan(Conditioning(batch_size=1))
    assert plan.text_sets == 2 and plan.text[0].add.shape == (2, 3, tiny_backbone.dims.text_width)
    for layer, owner in enumerate([0, 1]):
        expected = method.couplings[layer](method.prompts[owner])
        torch.testing.assert_close(plan.vision[layer].add, expected)


def test_one_prompt_one_layer_without_the_template_is_maple(tiny_backbone):
    """P = 1, one partition of depth 1: the MaPLe-like limit, logit for logit."""
    cfg = PMPOConfig(num_prompts=1, depth=1, prompt_length=2, use_manual_prompt=False)
    pmpo = build(tiny_backbone, cfg, seed=1)
    maple = build(tiny_backbone, MaPLeConfig(prompt_length=2, prompt_depth=1), seed=2)
    with torch.no_grad():
        pmpo.method.prompts.copy_(maple.method.text_prompts)
        pmpo.method.couplings[0].load_state_dict(maple.method.couplings[0].state_dict())
        x = images(tiny_backbone)
        torch.testing.assert_close(pmpo(x, CLASSES)[0], maple(x, CLASSES)[0])


def test_the_engine_gives_the_frozen_template_features(tiny_backbone):
    model = build(tiny_backbone, PMPOConfig(num_prompts=2, depth=2))
    with torch.no_grad():
        text = tiny_backbone.tokenizer([TEMPLATE.format(c) for c in CLASSES])
        template = F.normalize(tiny_backbone.model.encode_text(text), dim=-1)
        cond = model.conditioning(images(tiny_backbone, 1), CLASSES)
    torch.testing.assert_close(cond.class_features, template)
    assert model.template_features(CLASSES) is model.template_features(CLASSES)  # cached


def test_the_manual_prompt_joins_the_ensemble(tiny_backbone):
    """Class embedding = normalise(mean(P normalised prompt features, template feature))."""
    model = build(tiny_backbone, PMPOConfig(num_prompts=2, depth=2))
    e = torch.eye(3)
    cond = Conditioning(batch_size=1, class_features=e[2:3])
    pooled = model.method.pool_text(e[:2, None], cond)  # P=2 sets, C=1 class, D=3
    torch.testing.assert_close(pooled, F.normalize(torch.ones(1, 3), dim=-1))
    with torch.no_grad():
        joined = model.text_features(CLASSES)
        model.method.pool_text = lambda features, cond: features  # expose the P sets
        sets = model.text_features(CLASSES)
        template = model.template_features(CLASSES)
    assert sets.shape == (2, len(CLASSES), tiny_backbone.dims.embed_dim)
    expected = F.normalize(torch.cat([sets, template[None]]).mean(dim=0), dim=-1)
    torch.testing.assert_close(joined, expected)


def test_without_the_manual_prompt_only_the_learned_prompts_count(tiny_backbone):
    model = build(tiny_backbone, PMPOConfig(num_prompts=2, depth=2, use_manual_prompt=False))
    e = torch.eye(3)
    pooled = model.method.pool_text(e[:2, None], Conditioning(batch_size=1))
    torch.testing.assert_close(pooled, F.normalize(torch.tensor([[1.0, 1.0, 0.0]]), dim=-1))


def test_collapsed_prompts_show_in_the_diagnostics(tiny_backbone):
    model = build(tiny_backbone, PMPOConfig(num_prompts=2, depth=2))
    plan = model.method.plan(Conditioning(batch_size=1))
    spread = model.method.diagnostics(plan)
    assert set(spread) == {"prompt_cos_mean", "prompt_cos_max"} and spread["prompt_cos_max"] < 1
    with torch.no_grad():
        model.method.prompts[1].copy_(model.method.prompts[0])
    assert model.method.diagnostics(plan)["prompt_cos_max"] == pytest.approx(1.0)
    single = build(tiny_backbone, PMPOConfig(num_prompts=1, depth=2))
    assert single.method.diagnostics(plan) == {}
