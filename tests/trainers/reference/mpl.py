"""MPL's official forward (Zhenhan-Huang/Modular-Prompt-Learning @ cb5f63f), re-written in plain
PyTorch for the tests.

Written from reading trainers/mpl.py (`ModularPromptLearner`, `TextEncoder`, `CustomCLIP`) and
clip/model.py (`ResidualAttentionBlock_MPL`, `VisionTransformer_MultiModal`); it runs the
open_clip model's own pieces block by block and shares nothing with `trainers.prompted_clip`.
Parameters carry the official names:

    ctx (n, d_t)                          layer-0 text prompt
    proj.{weight,bias}                    d_t -> d_v, layer-0 vision prompt = proj(ctx)
    compound_prompts_text.{l} (n, d_t)    text prompts of layers 1..J-1 (l = 0..J-2)
    txt2img_proj.{i}.{l}.{weight,bias}    the i-th of N_ADD_OP maps d_t -> d_v of layer l + 1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Params = dict[str, Tensor]


def linear(params: Params, name: str, x: Tensor) -> Tensor:
    return F.linear(x, params[f"{name}.weight"], params[f"{name}.bias"])


def prompt_learner(params: Params, depth: int, n_add: int) -> tuple[Tensor, list, list]:
    """`ModularPromptLearner.forward`: layer-0 vision prompts, deeper text and vision prompts."""
    deep_text = [params[f"compound_prompts_text.{lid}"] for lid in range(depth - 1)]
    deep_vision = [
        torch.cat([linear(params, f"txt2img_proj.{i}.{lid}", deep_text[lid]) for i in range(n_add)])
        for lid in range(depth - 1)
    ]
    return linear(params, "proj", params["ctx"]), deep_text, deep_vision


def tokenized_prompts(tokenizer, classnames: list[str], ctx_init: str, n_ctx: int) -> Tensor:
    """The official prompts: n "X", then the whole CTX_INIT, the class name and "."."""
    prefix = " ".join(["X"] * n_ctx) + " " + ctx_init.replace("_", " ")
    return tokenizer([f"{prefix} {name.replace('_', ' ')}." for name in classnames])


def text_encoder(model, tokens: Tensor, ctx: Tensor, deep_text: list[Tensor]) -> Tensor:
    """`TextEncoder.forward`: SOS, ctx, the rest; layers 1..J-1 replace the n tokens after SOS."""
    embedding = model.token_embedding(tokens)
    n = ctx.shape[0]
    x = torch.cat([embedding[:, :1], ctx.expand(len(tokens), -1, -1), embedding[:, 1 + n :]], 1)
    x = x + model.positional_embedding
    for layer, block in enumerate(model.transformer.resblocks):  # open_clip: batch first
        if 0 < layer <= len(deep_text):
            prompt = deep_text[layer - 1].expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], prompt, x[:, 1 + n :]], dim=1)
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection


def image_encoder(
    model, images: Tensor, shared_ctx: Tensor, deep_vision: list[Tensor], n_rm: int
) -> Tensor:
    """`VisionTransformer_MultiModal.forward` with `ResidualAttentionBlock_MPL`'s vision side:
    at layers 1..J-1 the last n_rm tokens are cut and the layer's new prompts appended."""
    visual = model.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = torch.cat([x, shared_ctx.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)
    for layer, block in enumerate(visual.transformer.resblocks):
        if 0 < layer <= len(deep_vision):
            prefix = x[:, : x.shape[1] - n_rm]
            x = torch.cat([prefix, deep_vision[layer - 1].expand(x.shape[0], -1, -1)], dim=1)
        x = block(x)
    x = visual.ln_post(x[:, 0, :])
    return x @ visual.proj


@torch.no_grad()
def logits(
    model,
    tokenizer,
    images: Tensor,
    classnames: list[str],
    params: Params,
    *,
    depth: int,
    n_add: int,
    n_rm: int,
    ctx_init: str = "a photo of a",
) -> Tensor:
    """`CustomCLIP.forward` in evaluation: (B, C) logits."""
    shared_ctx, deep_text, deep_vision = prompt_learner(params, depth, n_add)
    tokens = tokenized_prompts(tokenizer, classnames, ctx_init, params["ctx"].shape[0])
    text_features = text_encoder(model, tokens, params["ctx"], deep_text)
    image_features = image_encoder(model, images, shared_ctx, deep_vision, n_rm)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image_features @ text_features.t()
