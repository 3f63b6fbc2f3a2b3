"""MuDPT: prompted depth, the injection model's cross-modal fusion and its one-way ablation."""

from __future__ import annotations

import pytest
import torch

from tests.trainers.test_methods import build, paper_param_count
from trainers.methods import Conditioning
from trainers.methods.mudpt import MuDPTConfig


def fused(method):
    plan = method.plan(Conditioning(batch_size=1))
    text = torch.stack([plan.text[layer].add for layer in sorted(plan.text)])
    vision = torch.stack([plan.vision[layer].add for layer in sorted(plan.vision)])
    return text, vision


@pytest.mark.parametrize("depth", [1, 2])
def test_injection_depth_sets_the_prompted_layers(tiny_backbone, depth):
    cfg = MuDPTConfig(injection_depth=depth, prompt_length=3, injection_heads=2)
    method = build(tiny_backbone, cfg).method
    plan = method.plan(Conditioning(batch_size=1))
    assert sorted(plan.text) == sorted(plan.vision) == list(range(depth))
    dims = tiny_backbone.dims
    assert plan.text[0].add.shape == (3, dims.text_width)
    assert plan.vision[depth - 1].add.shape == (3, dims.vision_width)
    assert all(edit.carry == 0 for edit in [*plan.text.values(), *plan.vision.values()])


def test_injection_depth_and_heads_must_fit_the_backbone(tiny_backbone):
    dims = tiny_backbone.dims
    assert "method.injection_depth" in MuDPTConfig(injection_depth=3).check(dims)[0]
    odd_heads = MuDPTConfig(injection_depth=2, injection_heads=3)
    assert "method.injection_heads" in odd_heads.check(dims)[0]
    with pytest.raises(ValueError, match="method.injection_heads"):
        build(tiny_backbone, odd_heads)
    assert MuDPTConfig(injection_depth=2, injection_width=96, injection_heads=3).check(dims) == []
    with pytest.raises(ValueError, match="method.injection_depth"):
        MuDPTConfig(injection_depth=0)
    with pytest.raises(ValueError, match="method.injection_width"):
        MuDPTConfig(injection_width=-1)


def test_fusion_is_bidirectional_and_residual(tiny_backbone):
    method = build(tiny_backbone, MuDPTConfig(injection_depth=2)).method
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


def test_one_way_fusion_leaves_the_text_prompts_alone(tiny_backbone):
    method = build(tiny_backbone, MuDPTConfig(injection_depth=2, bidirectional=False)).method
    assert method.text_out is None
    text, vision = fused(method)
    torch.testing.assert_close(text, method.text_prompts)
    with torch.no_grad():
        method.text_prompts.add_(torch.randn_like(method.text_prompts))
        _, vision_after = fused(method)
    assert not torch.allclose(vision, vision_after)


def test_injection_model_size_knobs(tiny_backbone):
    dims = tiny_backbone.dims
    cfg = MuDPTConfig(injection_depth=2, injection_width=32, injection_heads=4, injection_layers=3)
    method = build(tiny_backbone, cfg).method
    assert len(method.blocks) == 3 and method.text_in.out_features == 32
    assert method.blocks[0].num_heads == 4 and method.vision_out.out_features == dims.vision_width


def test_one_way_fusion_has_no_text_output_map_in_its_count(tiny_backbone):
    for bidirectional in (True, False):
        cfg = MuDPTConfig(injection_depth=2, bidirectional=bidirectional)
        method = build(tiny_backbone, cfg).method
        count = sum(p.numel() for p in method.parameters())
        assert count == paper_param_count("mudpt", cfg, tiny_backbone.dims)
