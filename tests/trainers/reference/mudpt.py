"""MuDPT's official forward (YzM1a0/MuDPT @ 0d83ec5), re-written in plain PyTorch for the tests.

Written from reading trainers/mudpt.py (`MuDPTPromptLearner`, `TextEncoder`, `CustomCLIP`) and
clip/model.py (`VisionTransformer_MuDPT`, `ResidualAttentionBlock_MuDPT`); it runs the open_clip
model's own pieces block by block and shares nothing with `trainers.prompted_clip`. Parameters
carry the official names:

    ctx (n, d_t)                      layer-0 text prompt
    deep_prompts (L-1, n, d_t)        text prompts of layers 1..L-1
    visual_ctx (n, d_v)               layer-0 vision prompt
    visual_ctx_deep_prompts (L-1, n, d_v)
    embed_projection.{weight,bias}    d_t -> d_v, layer 0 (text -> vision)
    deep_projections.{weight,bias}    d_t -> d_v, layers 1..L-1 (text -> vision)
    visual_ctx_deep_projections.{weight,bias}   d_v -> d_t, layers 1..L-1 (vision -> text);
                                      absent = one-way (the official code always has it)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Params = dict[str, Tensor]


def linear(params: Params, name: str, x: Tensor) -> Tensor:
    return F.linear(x, params[f"{name}.weight"], params[f"{name}.bias"])


def prompt_learner(params: Params) -> tuple[Tensor, Tensor, Tensor]:
    """`MuDPTPromptLearner.forward`: text -> vision maps of the text prompts."""
    t2v_visual_prompts = linear(params, "deep_projections", params["deep_prompts"])
    t2v_shared_ctx = linear(params, "embed_projection", params["ctx"].unsqueeze(0))
    return t2v_shared_ctx, params["deep_prompts"], t2v_visual_prompts


def replace_text_prompts(x: Tensor, prompt: Tensor) -> Tensor:
    """`ResidualAttentionBlock_MuDPT` (text): the n tokens after SOS become `prompt` (NLD)."""
    n = prompt.shape[0]
    return torch.cat([x[:, :1], prompt.expand(x.shape[0], -1, -1), x[:, 1 + n :]], dim=1)


def replace_vision_prompts(x: Tensor, prompt: Tensor) -> Tensor:
    """`ResidualAttentionBlock_MuDPT` (vision): the last n tokens become `prompt` (NLD)."""
    n = prompt.shape[0]
    return torch.cat([x[:, : x.shape[1] - n], prompt.expand(x.shape[0], -1, -1)], dim=1)


def image_encoder(
    model, images: Tensor, shared_prompt: Tensor, t2v_visual_prompts: Tensor, params: Params
) -> tuple[Tensor, Tensor | None]:
    """`VisionTransformer_MuDPT.forward`: image features and the vision -> text prompts."""
    visual = model.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    visual_prompt = params["visual_ctx"].unsqueeze(0) + shared_prompt
    x = torch.cat([x, visual_prompt.expand(x.shape[0], -1, -1)], dim=1)
    visual_deep_prompts = t2v_visual_prompts + params["visual_ctx_deep_prompts"]
    text_prompts = None
    if "visual_ctx_deep_projections.weight" in params:
        text_prompts = linear(
            params, "visual_ctx_deep_projections", params["visual_ctx_deep_prompts"]
        )
    x = visual.ln_pre(x)
    for layer, block in enumerate(visual.transformer.resblocks):  # open_clip: batch first
        if 0 < layer <= len(visual_deep_prompts):
            x = replace_vision_prompts(x, visual_deep_prompts[layer - 1])
        x = block(x)
    x = visual.ln_post(x[:, 0, :])
    return x @ visual.proj, text_prompts


def tokenized_prompts(tokenizer, classnames: list[str], init_text: str, n_ctx: int) -> Tensor:
    """The official prompts: the first n words of CTX_INIT (or n "X"), the class name, "."."""
    words = init_text.split()[:n_ctx] if init_text else ["X"] * n_ctx
    prefix = " ".join(words)
    return tokenizer([f"{prefix} {name.replace('_', ' ')}." for name in classnames])


def text_encoder(model, tokens: Tensor, ctx: Tensor, deep_prompts: Tensor) -> Tensor:
    """`TextEncoder.forward` on `construct_prompts` (SOS, ctx, the rest of the tokens)."""
    embedding = model.token_embedding(tokens)
    n = ctx.shape[0]
    x = torch.cat([embedding[:, :1], ctx.expand(len(tokens), -1, -1), embedding[:, 1 + n :]], dim=1)
    x = x + model.positional_embedding
    for layer, block in enumerate(model.transformer.resblocks):
        if 0 < layer <= len(deep_prompts):
            x = replace_text_prompts(x, deep_prompts[layer - 1])
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection


@torch.no_grad()
def logits(
    model, tokenizer, images: Tensor, classnames: list[str], params: Params, init_text: str
) -> Tensor:
    """`CustomCLIP.forward`: (B, C) logits."""
    shared_ctx, text_deep_prompts, t2v_visual_prompts = prompt_learner(params)
    image_features, text_prompts = image_encoder(
        model, images, shared_ctx, t2v_visual_prompts, params
    )
    if text_prompts is not None:
        text_deep_prompts = text_deep_prompts + text_prompts
    tokens = tokenized_prompts(tokenizer, classnames, init_text, params["ctx"].shape[0])
    text_features = text_encoder(model, tokens, params["ctx"], text_deep_prompts)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image_features @ text_features.t()
