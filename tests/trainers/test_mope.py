"""MoPE: routing, the importance (balance) loss, the three prompt kinds, image conditioning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.trainers.test_methods import (
    CLASSES,
    TEMPLATE,
    build,
    images,
    paper_param_count,
    zero_shot_logits,
)
from trainers.methods import Conditioning
from trainers.methods.mope import MoPEConfig, balance_loss


def cond_for(dims, batch: int = 6, seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    y = F.normalize(torch.randn(batch, dims.embed_dim, generator=g), dim=-1)
    return Conditioning(batch_size=batch, image_features=y)


def test_balance_loss_is_zero_for_uniform_and_largest_for_collapsed_routing():
    k = 4
    uniform = torch.full((2, 8, k), 1 / k)
    collapsed = F.one_hot(torch.zeros(2, 8, dtype=torch.long), k).float()
    assert balance_loss(uniform).item() == pytest.approx(0.0, abs=1e-6)
    assert balance_loss(collapsed).item() == pytest.approx(k - 1)
    spread = F.one_hot(torch.arange(8).remainder(k), k).float()[None]  # each expert, 2 images
    assert balance_loss(spread).item() == pytest.approx(0.0, abs=1e-6)


def test_routing_weights_are_a_distribution_per_image_and_layer(tiny_backbone):
    cfg = MoPEConfig(num_experts=3, prompt_depth=2)
    method = build(tiny_backbone, cfg).method
    plan = method.plan(cond_for(tiny_backbone.dims))
    routing = plan.extras["routing"]
    assert routing.shape == (2, 6, 3) and (routing >= 0).all()
    torch.testing.assert_close(routing.sum(-1), torch.ones(2, 6))
    tokens = cfg.static_length + cfg.prompt_length + cfg.mapped_length
    assert plan.vision[0].add.shape == (6, tokens, tiny_backbone.dims.vision_width)
    assert plan.text == {}


def test_the_balance_loss_is_weighted_and_reported(tiny_backbone):
    method = build(tiny_backbone, MoPEConfig(prompt_depth=2, balance_weight=0.5)).method
    plan = method.plan(cond_for(tiny_backbone.dims))
    losses = method.aux_losses(plan)
    torch.testing.assert_close(losses["balance"], 0.5 * balance_loss(plan.extras["routing"]))
    assert losses["balance"].requires_grad
    off = build(tiny_backbone, MoPEConfig(prompt_depth=2, balance_weight=0.0)).method
    assert off.aux_losses(off.plan(cond_for(tiny_backbone.dims))) == {}


def test_temperature_flattens_the_routing(tiny_backbone):
    sharp = build(tiny_backbone, MoPEConfig(prompt_depth=1, router_temperature=0.01), seed=1)
    flat = build(tiny_backbone, MoPEConfig(prompt_depth=1, router_temperature=100.0), seed=1)
    cond = cond_for(tiny_backbone.dims)
    entropy = {
        name: m.method.diagnostics(m.method.plan(cond))["routing_entropy"]
        for name, m in (("sharp", sharp), ("flat", flat))
    }
    assert entropy["sharp"] < entropy["flat"] <= math.log(4) + 1e-6
    assert entropy["flat"] == pytest.approx(math.log(4), abs=1e-3)


def test_diagnostics_report_usage_per_expert_and_entropy(tiny_backbone):
    method = build(tiny_backbone, MoPEConfig(num_experts=5, prompt_depth=2)).method
    diag = method.diagnostics(method.plan(cond_for(tiny_backbone.dims)))
    usage = [diag[f"expert_usage_{j}"] for j in range(5)]
    assert sum(usage) == pytest.approx(1.0) and 0 <= diag["routing_entropy"] <= math.log(5)


@pytest.mark.parametrize(
    ("flags", "tokens"),
    [
        ({"dynamic_prompt": False}, 4 + 1),
        ({"static_prompt": False, "mapped_prompt": False}, 4),
        ({"static_prompt": False, "dynamic_prompt": False}, 1),
    ],
)
def test_each_prompt_kind_can_be_switched_off(tiny_backbone, flags, tokens):
    method = build(tiny_backbone, MoPEConfig(prompt_depth=2, **flags)).method
    plan = method.plan(cond_for(tiny_backbone.dims))
    assert plan.vision[1].add.shape[1] == tokens
    names = {name.split(".")[0] for name, _ in method.named_parameters()}
    kinds = {"static": "static", "experts": "dynamic", "routers": "dynamic", "mappers": "mapped"}
    assert names == {name for name, kind in kinds.items() if flags.get(f"{kind}_prompt", True)}
    count = sum(p.numel() for p in method.parameters())
    assert count == paper_param_count("mope", method.cfg, tiny_backbone.dims)
    if not flags.get("dynamic_prompt", True):
        assert method.aux_losses(plan) == {} and method.diagnostics(plan) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"static_prompt": False, "dynamic_prompt": False, "mapped_prompt": False}, "turn one"),
        ({"num_experts": 0}, "method.num_experts"),
        ({"router_temperature": 0.0}, "method.router_temperature"),
        ({"balance_weight": -1.0}, "method.balance_weight"),
        ({"mapped_length": 0}, "method.mapped_length"),
        ({"prompt_length": 0}, "method.prompt_length"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoPEConfig(**kwargs)


def test_prompt_depth_must_fit_the_vision_encoder(tiny_backbone):
    assert "method.prompt_depth" in MoPEConfig(prompt_depth=3).check(tiny_backbone.dims)[0]


def test_prompts_are_conditioned_on_each_images_own_frozen_feature(tiny_backbone):
    model = build(tiny_backbone, MoPEConfig(prompt_depth=2))
    x = images(tiny_backbone)
    with torch.no_grad():
        cond = model.conditioning(x, CLASSES)
        own = F.normalize(tiny_backbone.model.encode_image(x), dim=-1)
        torch.testing.assert_close(cond.image_features, own)
        prompts = model.method.plan(cond).vision[0].add
    assert not torch.allclose(prompts[0], prompts[1])  # instance-wise prompts


def test_the_text_branch_is_the_hand_written_template(tiny_backbone):
    """No text prompts: the class embeddings are zero-shot CLIP's; only the images are prompted."""
    model = build(tiny_backbone, MoPEConfig(prompt_depth=2))
    x = images(tiny_backbone)
    with torch.no_grad():
        cond = model.conditioning(x, CLASSES)
        text = model.encode_text(model.method.plan(cond), CLASSES, cond)
        tokens = tiny_backbone.tokenizer([TEMPLATE.format(c) for c in CLASSES])
        template = F.normalize(tiny_backbone.model.encode_text(tokens), dim=-1)
        ours = model(x, CLASSES)[0]
    torch.testing.assert_close(text, template, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, zero_shot_logits(tiny_backbone, x))
