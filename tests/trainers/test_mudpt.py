"""MuDPT: the official linear coupling (default, checked against an independent re-write of the
official forward), the paper's attention injection model (variant), depth and the one-way
ablation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.trainers.reference import mudpt as official
from tests.trainers.test_methods import CLASSES, build, images, paper_param_count
from trainers.backbone import dims_of
from trainers.methods import Conditioning
from trainers.methods.base import PromptMethod
from trainers.methods.mudpt import MuDPT, MuDPTConfig

ATOL = 1e-5  # float32 rounding of the same maths, done in another order


def fused(method):
    plan = method.plan(Conditioning(batch_size=1))
    text = torch.stack([plan.text[layer].add for layer in sorted(plan.text)])
    vision = torch.stack([plan.vision[layer].add for layer in sorted(plan.vision)])
    return text, vision


def official_params(method: MuDPT) -> official.Params:
    """The method's parameters under the official code's names (see the reference module)."""
    coupling = method.fusion
    params = {
        "ctx": method.text_prompts[0],
        "deep_prompts": method.text_prompts[1:],
        "visual_ctx": method.vision_prompts[0],
        "visual_ctx_deep_prompts": method.vision_prompts[1:],
    }
    maps = {
        "embed_projection": coupling.first_text_to_vision,
        "deep_projections": coupling.text_to_vision,
        "visual_ctx_deep_projections": coupling.vision_to_text,
    }
    dt, dv = method.dims.text_width, method.dims.vision_width
    if maps["deep_projections"] is None:  # L = 1: built but unused by the official code
        params |= {"deep_projections.weight": torch.zeros(dv, dt), "deep_projections.bias": None}
    for name, module in maps.items():
        if module is not None:
            params |= {f"{name}.weight": module.weight, f"{name}.bias": module.bias}
    return {k: v if v is None else v.detach().clone() for k, v in params.items()}


def engine_and_official(backbone, cfg: MuDPTConfig, params_edit=None):
    model = build(backbone, cfg, seed=1)
    x = images(backbone)
    params = official_params(model.method)
    if params_edit is not None:
        params_edit(params)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    theirs = official.logits(backbone.model, backbone.tokenizer, x, CLASSES, params, cfg.init_text)
    return ours, theirs


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"prompt_length": 2},  # "a photo" learnable, "of a" dropped
        {"injection_depth": 2, "bidirectional": False},
        {"injection_depth": 1},
        {"init_text": ""},
    ],
)
def test_linear_coupling_matches_the_official_forward(tiny_clip, changes):
    cfg = MuDPTConfig(**{"injection_depth": 4, **changes})
    ours, theirs = engine_and_official(tiny_clip, cfg)
    assert ours.abs().max() > 1  # real logits, not a degenerate zero
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=ATOL)


def test_linear_coupling_matches_the_official_forward_on_uneven_widths(uneven_backbone):
    """d_t 64, d_v 96, D 48: a map of the wrong width cannot go unnoticed (tiny_clip has 128s)."""
    ours, theirs = engine_and_official(uneven_backbone, MuDPTConfig(injection_depth=2))
    assert ours.abs().max() > 1  # real logits, not a degenerate zero
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=ATOL)


def test_the_official_comparison_can_fail(tiny_clip, monkeypatch):
    """Negative controls: one parameter nudged, or one design detail changed, shows up."""
    cfg = MuDPTConfig(injection_depth=4, prompt_length=2)

    def nudge(params):  # random: a constant shift of a token would vanish in the layer norms
        bias = params["visual_ctx_deep_projections.bias"]
        noise = torch.randn(bias.shape, generator=torch.Generator().manual_seed(0))
        params["visual_ctx_deep_projections.bias"] = bias + 0.01 * noise

    ours, theirs = engine_and_official(tiny_clip, cfg, nudge)
    assert (ours - theirs).abs().max() > 100 * ATOL
    # MaPLe's class text (the init words past n stay as frozen text) instead of the official one
    monkeypatch.setattr(MuDPT, "class_text", PromptMethod.class_text)
    ours, theirs = engine_and_official(tiny_clip, cfg)
    assert (ours - theirs).abs().max() > 100 * ATOL


def test_default_is_the_official_setting_with_its_parameter_count():
    cfg = MuDPTConfig()
    assert (cfg.injection, cfg.prompt_length, cfg.injection_depth) == ("linear", 4, 9)
    assert cfg.init_text == "a photo of a" and cfg.bidirectional
    dims = dims_of("ViT-B-16")
    method = MuDPT(cfg, dims, lambda text: torch.zeros(len(text.split()), dims.text_width))
    count = sum(p.numel() for p in method.parameters() if p.requires_grad)
    # official (nctx4_depth9): ctx 4*512, deep_prompts 8*4*512, visual_ctx 4*768,
    # visual_ctx_deep_prompts 8*4*768, embed_projection and deep_projections 512*768+768 each,
    # visual_ctx_deep_projections 768*512+512
    assert count == 1_227_776 == paper_param_count("mudpt", cfg, dims)
    attention = dataclasses.replace(cfg, injection="attention")
    method = MuDPT(attention, dims, lambda text: torch.zeros(len(text.split()), dims.text_width))
    count = sum(p.numel() for p in method.parameters())
    assert count == 2_410_752 == paper_param_count("mudpt", attention, dims)


@pytest.mark.parametrize("injection", ["linear", "attention"])
@pytest.mark.parametrize("depth", [1, 2])
def test_injection_depth_sets_the_prompted_layers(tiny_backbone, depth, injection):
    cfg = MuDPTConfig(
        injection=injection, injection_depth=depth, prompt_length=3, injection_heads=2
    )
    method = build(tiny_backbone, cfg).method
    plan = method.plan(Conditioning(batch_size=1))
    assert sorted(plan.text) == sorted(plan.vision) == list(range(depth))
    dims = tiny_backbone.dims
    assert plan.text[0].add.shape == (3, dims.text_width)
    assert plan.vision[depth - 1].add.shape == (3, dims.vision_width)
    assert all(edit.carry == 0 for edit in [*plan.text.values(), *plan.vision.values()])
    assert method.class_text("a photo of a {}.", "zero") == "zero."


def test_config_validation(tiny_backbone):
    dims = tiny_backbone.dims
    assert "method.injection_depth" in MuDPTConfig(injection_depth=3).check(dims)[0]
    odd_heads = MuDPTConfig(injection="attention", injection_depth=2, injection_heads=3)
    assert "method.injection_heads" in odd_heads.check(dims)[0]
    with pytest.raises(ValueError, match="method.injection_heads"):
        build(tiny_backbone, odd_heads)
    assert dataclasses.replace(odd_heads, injection="linear").check(dims) == []  # no heads there
    assert dataclasses.replace(odd_heads, injection_width=96).check(dims) == []
    with pytest.raises(ValueError, match="method.injection_depth"):
        MuDPTConfig(injection_depth=0)
    with pytest.raises(ValueError, match="method.injection_width"):
        MuDPTConfig(injection_width=-1)
    with pytest.raises(ValueError, match="method.injection must be one of linear, attention"):
        MuDPTConfig(injection="cross")


def test_linear_coupling_shares_its_deep_maps_and_reads_the_unfused_prompts(uneven_backbone):
    method = build(uneven_backbone, MuDPTConfig(injection_depth=2)).method
    coupling, dims = method.fusion, uneven_backbone.dims
    assert coupling.vision_to_text.out_features == dims.text_width  # d_t=64, D=48, d_v=96
    text, vision = fused(method)
    torch.testing.assert_close(text[0], method.text_prompts[0])  # layer 0: text -> vision only
    with torch.no_grad():
        expected_text = method.text_prompts[1] + coupling.vision_to_text(method.vision_prompts[1])
        expected_vision = method.vision_prompts[1] + coupling.text_to_vision(method.text_prompts[1])
        first_vision = method.vision_prompts[0] + coupling.first_text_to_vision(
            method.text_prompts[0]
        )
    torch.testing.assert_close(text[1], expected_text)
    torch.testing.assert_close(vision[1], expected_vision)
    torch.testing.assert_close(vision[0], first_vision)


def test_one_way_linear_coupling_has_no_vision_to_text_map(tiny_backbone):
    method = build(tiny_backbone, MuDPTConfig(injection_depth=2, bidirectional=False)).method
    assert method.fusion.vision_to_text is None
    text, _ = fused(method)
    torch.testing.assert_close(text, method.text_prompts)


def test_attention_fusion_is_bidirectional_and_residual(tiny_backbone):
    cfg = MuDPTConfig(injection="attention", injection_depth=2)
    method = build(tiny_backbone, cfg).method
    text, vision = fused(method)
    assert not torch.allclose(text, method.text_prompts)  # cross-modal term added
    with torch.no_grad():
        method.vision_prompts[1].add_(torch.randn_like(method.vision_prompts[1]))
        text_after, _ = fused(method)
        method.text_prompts[1].add_(torch.randn_like(method.text_prompts[1]))
        _, vision_after = fused(method)
    assert not torch.allclose(text[1], text_after[1])  # vision -> text
    assert not torch.allclose(vision[1], vision_after[1])  # text -> vision
    torch.testing.assert_close(text[0], text_after[0])  # layers fuse independently


def test_one_way_attention_fusion_leaves_the_text_prompts_alone(tiny_backbone):
    cfg = MuDPTConfig(injection="attention", injection_depth=2, bidirectional=False)
    method = build(tiny_backbone, cfg).method
    assert method.fusion.text_out is None
    text, vision = fused(method)
    torch.testing.assert_close(text, method.text_prompts)
    with torch.no_grad():
        method.text_prompts.add_(torch.randn_like(method.text_prompts))
        _, vision_after = fused(method)
    assert not torch.allclose(vision, vision_after)


def test_attention_model_size_knobs(tiny_backbone):
    dims = tiny_backbone.dims
    cfg = MuDPTConfig(
        injection="attention",
        injection_depth=2,
        injection_width=32,
        injection_heads=4,
        injection_layers=3,
    )
    fusion = build(tiny_backbone, cfg).method.fusion
    assert len(fusion.blocks) == 3 and fusion.text_in.out_features == 32
    assert fusion.blocks[0].num_heads == 4 and fusion.vision_out.out_features == dims.vision_width


@pytest.mark.parametrize("injection", ["linear", "attention"])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_parameter_count_formula(tiny_backbone, uneven_backbone, injection, depth, bidirectional):
    for backbone in (tiny_backbone, uneven_backbone):
        cfg = MuDPTConfig(
            injection=injection,
            injection_depth=depth,
            bidirectional=bidirectional,
            injection_heads=2,
        )
        method = build(backbone, cfg).method
        count = sum(p.numel() for p in method.parameters())
        assert count == paper_param_count("mudpt", cfg, backbone.dims)


def test_attention_knobs_are_inert_only_under_the_linear_coupling(tiny_backbone):
    x = images(tiny_backbone)

    def logits(cfg):
        with torch.no_grad():
            return build(tiny_backbone, cfg)(x, CLASSES)[0]

    for injection in ("linear", "attention"):
        base = MuDPTConfig(injection=injection, injection_depth=2, injection_heads=2)
        reference = logits(base)
        for changes in ({"injection_heads": 4}, {"injection_width": 32}, {"injection_layers": 2}):
            changed = dataclasses.replace(base, **changes)
            same = torch.allclose(reference, logits(changed), atol=1e-6)
            assert same == (injection == "linear"), (injection, changes)
            assert set(changes) <= set(changed.inert_knobs()) or injection == "attention"
    one_layer = MuDPTConfig(injection_depth=1)
    assert "bidirectional" in one_layer.inert_knobs()
    assert logits(one_layer).allclose(logits(dataclasses.replace(one_layer, bidirectional=False)))
