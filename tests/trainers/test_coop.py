"""CoOp as its authors ran it: defaults, initialisation, and logits against the official forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.trainers.reference import coop as official
from tests.trainers.test_methods import TEMPLATE, as_if_trained, build, images
from trainers.backbone import dims_of
from trainers.methods.coop import CoOp, CoOpConfig

CLASSES = ["zero", "one", "ankle boot", "t-shirt", "giraffe"]  # one to five tokens


def test_the_default_is_coops_own_setting():
    """train.py: N_CTX 16, CTX_INIT "" (random), unified context, class token at the end."""
    cfg = CoOpConfig()
    assert (cfg.prompt_length, cfg.init_text) == (16, "")
    assert cfg.inert_knobs() == {}


@pytest.mark.parametrize(
    ("changes", "count"), [({}, 8_192), ({"init_text": "a photo of a"}, 2_048)]
)
def test_trainable_parameters_at_vit_b16(changes, count):
    dims = dims_of("ViT-B-16")
    cfg = dataclasses.replace(CoOpConfig(), **changes)
    method = CoOp(cfg, dims, lambda text: torch.zeros(len(text.split()), dims.text_width))
    assert sum(p.numel() for p in method.parameters() if p.requires_grad) == count


@pytest.mark.parametrize(
    "changes",
    [{}, {"init_text": "a photo of a"}, {"prompt_length": 3}],
)
def test_logits_equal_the_official_forward(tiny_clip, changes):
    cfg = dataclasses.replace(CoOpConfig().for_backbone(tiny_clip.dims), **changes)
    model = build(tiny_clip, cfg)
    as_if_trained(model)
    x = images(tiny_clip)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    ctx = model.method.ctx.detach().clone()
    ref = official.logits(tiny_clip.model, tiny_clip.tokenizer, x, CLASSES, ctx, cfg.init_text)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # negative control: the first or the last context vector nudged (a random direction; a
    # constant shift of all its components would vanish in the LayerNorms)
    g = torch.Generator().manual_seed(3)
    for index in (0, -1):
        nudged = ctx.clone()
        nudged[index] += 0.05 * torch.randn(ctx.shape[-1], generator=g)
        off = official.logits(
            tiny_clip.model, tiny_clip.tokenizer, x, CLASSES, nudged, cfg.init_text
        )
        assert (off - ours).abs().max() > 1e-3


def test_an_init_text_is_the_context_and_prompt_length_is_inert(tiny_clip):
    """As the code: n = the init text's words, the vectors = its token embeddings."""
    short = build(tiny_clip, CoOpConfig(prompt_length=16, init_text="a photo of a"))
    long = build(tiny_clip, CoOpConfig(prompt_length=2, init_text="a photo of a"))
    expected = official.initial_ctx(tiny_clip.model, tiny_clip.tokenizer, "a photo of a")
    assert short.method.ctx.shape == (4, tiny_clip.dims.text_width)
    torch.testing.assert_close(short.method.ctx.detach(), expected, atol=0, rtol=0)
    torch.testing.assert_close(long.method.ctx.detach(), expected, atol=0, rtol=0)
    assert set(short.method.cfg.inert_knobs()) == {"prompt_length"}
    assert short.method.class_text(TEMPLATE, "zero") == "zero."


def test_without_an_init_text_the_context_is_n_random_vectors():
    """N_CTX vectors from N(0, 0.02), never a mix of words and noise."""
    dims = dims_of("ViT-B-16")
    torch.manual_seed(0)
    ctx = CoOp(CoOpConfig(), dims, lambda text: torch.ones(len(text.split()), 512)).ctx
    assert ctx.shape == (16, 512)
    assert 0.018 < ctx.std().item() < 0.022  # 8,192 draws: the estimate is within 2%
    assert not (ctx == 1).any()


def test_the_default_length_fits_a_short_context(tiny_clip):
    """tiny_clip's context has 16 tokens: the default 16 vectors become 8; set values stay."""
    assert CoOpConfig().for_backbone(tiny_clip.dims).prompt_length == 8
    assert CoOpConfig().for_backbone(dims_of("ViT-B-16")).prompt_length == 16
    assert CoOpConfig(prompt_length=12).for_backbone(tiny_clip.dims).prompt_length == 12
    assert CoOpConfig(prompt_length=14).check(tiny_clip.dims)[0].startswith("method.prompt_length")
    assert CoOpConfig(prompt_length=13).check(tiny_clip.dims) == []
