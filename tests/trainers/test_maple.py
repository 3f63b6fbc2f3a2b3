"""MaPLe as its authors ran it: defaults, initialisation, logits against the official forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from tests.trainers.reference import maple as official
from tests.trainers.test_methods import TEMPLATE, as_if_trained, build, images
from trainers.backbone import dims_of
from trainers.methods.maple import MaPLe, MaPLeConfig

CLASSES = ["zero", "one", "ankle boot", "t-shirt", "giraffe"]  # one to five tokens


def official_params(method: MaPLe) -> dict[str, Tensor]:
    """Our parameters under the official names (layer 0 apart, deeper layers numbered from 0)."""
    prompts, maps = method.text_prompts.detach(), method.couplings
    params = {"ctx": prompts[0], "proj.weight": maps[0].weight, "proj.bias": maps[0].bias}
    for lid in range(len(prompts) - 1):
        params[f"compound_prompts_text.{lid}"] = prompts[lid + 1]
        params[f"compound_prompt_projections.{lid}.weight"] = maps[lid + 1].weight
        params[f"compound_prompt_projections.{lid}.bias"] = maps[lid + 1].bias
    return {k: v.detach().clone() for k, v in params.items()}


def test_the_default_is_the_official_config():
    """configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml: N_CTX 2, depth 9, init words."""
    cfg = MaPLeConfig()
    assert (cfg.prompt_length, cfg.prompt_depth, cfg.init_text) == (2, 9, "a photo of a")


def test_trainable_parameters_at_vit_b16():
    dims = dims_of("ViT-B-16")
    method = MaPLe(MaPLeConfig(), dims, lambda text: torch.zeros(len(text.split()), 512))
    assert sum(p.numel() for p in method.parameters() if p.requires_grad) == 3_555_072


@pytest.mark.parametrize(
    "changes", [{}, {"prompt_depth": 4}, {"prompt_length": 5}, {"init_text": ""}]
)
def test_logits_equal_the_official_forward(tiny_clip, changes):
    cfg = dataclasses.replace(MaPLeConfig().for_backbone(tiny_clip.dims), **changes)
    model = build(tiny_clip, cfg)
    as_if_trained(model)
    x = images(tiny_clip)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    params = official_params(model.method)
    args = (tiny_clip.model, tiny_clip.tokenizer, x, CLASSES)
    torch.testing.assert_close(
        ours, official.logits(*args, params, cfg.init_text), atol=1e-5, rtol=1e-5
    )
    # negative controls: one deeper coupling nudged; the deeper layers' prompts in another order
    g = torch.Generator().manual_seed(3)
    weight = params["compound_prompt_projections.0.weight"]
    nudged = {
        **params,
        "compound_prompt_projections.0.weight": weight
        + 0.05 * torch.randn(weight.shape, generator=g),
    }
    swapped = dict(params)
    last = f"compound_prompts_text.{cfg.prompt_depth - 2}"
    swapped["compound_prompts_text.0"], swapped[last] = (
        params[last],
        params["compound_prompts_text.0"],
    )
    for wrong in (nudged, swapped):
        assert (official.logits(*args, wrong, cfg.init_text) - ours).abs().max() > 1e-3


def test_the_deeper_couplings_start_as_copies_of_one_map(tiny_clip):
    """`_get_clones(nn.Linear(ctx_dim, 768), J - 1)`; layer 0's `proj` has its own init."""
    maps = build(tiny_clip, MaPLeConfig(prompt_depth=4)).method.couplings
    for deeper in maps[2:]:
        torch.testing.assert_close(deeper.state_dict(), maps[1].state_dict(), atol=0, rtol=0)
    assert not torch.equal(maps[0].weight, maps[1].weight)


@pytest.mark.parametrize("length", [1, 2, 4])
def test_layer_0_starts_from_the_first_words_and_the_rest_stay_text(tiny_clip, length):
    method = build(tiny_clip, MaPLeConfig(prompt_length=length, prompt_depth=3)).method
    expected = official.initial_ctx(tiny_clip.model, tiny_clip.tokenizer, "a photo of a", length)
    torch.testing.assert_close(method.text_prompts[0].detach(), expected, atol=0, rtol=0)
    rest = " ".join(["a", "photo", "of", "a"][length:])
    assert method.class_text(TEMPLATE, "zero") == f"{rest} zero.".strip()


def test_more_tokens_than_init_words_are_all_random(tiny_clip):
    """The code draws N(0, 0.02) for every token then (no mix of words and noise)."""
    method = build(tiny_clip, MaPLeConfig(prompt_length=5, prompt_depth=3)).method
    words = tiny_clip.model.token_embedding.weight
    first = method.text_prompts[0].detach()
    assert 0.015 < first.std().item() < 0.025  # 640 draws
    assert torch.cdist(first, words).min() > 1e-3  # no row is a word embedding
    assert method.class_text(TEMPLATE, "zero") == "zero."
