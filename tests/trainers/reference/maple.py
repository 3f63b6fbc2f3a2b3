"""MaPLe's official forward (muzairkhattak/multimodal-prompt-learning), re-written in plain
PyTorch for the tests.

Written from reading trainers/maple.py (`MultiModalPromptLearner`, lines 69-176; `TextEncoder`,
lines 43-66; `CustomCLIP.forward`, lines 189-204) and clip/model.py
(`ResidualAttentionBlock_MaPLe.forward`, lines 287-331; `VisionTransformer_MaPLe.forward`,
lines 445-476); it runs the open_clip model's pieces itself on full-length token sequences and
shares nothing with `trainers.prompted_clip`. Parameters carry the official names:

    ctx (n, d_t)                                  layer-0 text prompt
    proj.{weight,bias}                            d_t -> d_v: layer-0 vision prompt = proj(ctx)
    compound_prompts_text.{l} (n, d_t)            text prompts of layers 1..J-1 (l = 0..J-2)
    compound_prompt_projections.{l}.{weight,bias} their maps d_t -> d_v
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Params = dict[str, Tensor]


def uses_init_words(ctx_init: str, n_ctx: int) -> bool:
    """The code's test (`ctx_init and n_ctx <= 4`): its CTX_INIT "a photo of a" has 4 words."""
    return bool(ctx_init) and n_ctx <= 4


@torch.no_grad()
def initial_ctx(model, tokenizer, ctx_init: str, n_ctx: int) -> Tensor:
    """Layer 0's text prompt initialised from CTX_INIT: its first n_ctx token embeddings."""
    return model.token_embedding(tokenizer([ctx_init.replace("_", " ")]))[0, 1 : 1 + n_ctx]


def tokenized_prompts(tokenizer, classnames: list[str], ctx_init: str, n_ctx: int) -> Tensor:
    """The whole CTX_INIT before each class name (its first n_ctx tokens become the prompt)."""
    if uses_init_words(ctx_init, n_ctx):
        prefix = ctx_init.replace("_", " ")
    else:
        prefix = " ".join(["X"] * n_ctx)
    return tokenizer([f"{prefix} {name.replace('_', ' ')}." for name in classnames])


def linear(params: Params, name: str, x: Tensor) -> Tensor:
    return F.linear(x, params[f"{name}.weight"], params[f"{name}.bias"])


def prompt_learner(params: Params, depth: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """`MultiModalPromptLearner.forward`: proj(ctx), the deeper text prompts, their maps."""
    deep_text = [params[f"compound_prompts_text.{lid}"] for lid in range(depth - 1)]
    deep_vision = [
        linear(params, f"compound_prompt_projections.{lid}", deep_text[lid])
        for lid in range(depth - 1)
    ]
    return linear(params, "proj", params["ctx"]), deep_text, deep_vision


def text_encoder(model, tokens: Tensor, ctx: Tensor, deep_text: list[Tensor]) -> Tensor:
    """[SOS] [ctx] [suffix]; at layers 1..J-1 the n tokens after SOS are replaced."""
    embedding = model.token_embedding(tokens)
    n = ctx.shape[0]
    x = torch.cat([embedding[:, :1], ctx.expand(len(tokens), -1, -1), embedding[:, 1 + n :]], 1)
    x = x + model.positional_embedding
    counter = 0
    for layer, block in enumerate(model.transformer.resblocks):  # open_clip: batch first
        if layer > 0 and counter < len(deep_text):
            prompt = deep_text[counter].expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], prompt, x[:, 1 + n :]], dim=1)
            counter += 1
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection


def image_encoder(model, images: Tensor, shared_ctx: Tensor, deep_vision: list[Tensor]) -> Tensor:
    """[CLS] patches [proj(ctx)] through ln_pre; at layers 1..J-1 the last n tokens replaced."""
    visual = model.visual
    n = shared_ctx.shape[0]
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = torch.cat([x, shared_ctx.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)
    counter = 0
    for layer, block in enumerate(visual.transformer.resblocks):
        if layer > 0 and counter < len(deep_vision):
            prompt = deep_vision[counter].expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, : x.shape[1] - n], prompt], dim=1)
            counter += 1
        x = block(x)
    return visual.ln_post(x[:, 0, :]) @ visual.proj


@torch.no_grad()
def logits(
    model, tokenizer, images: Tensor, classnames: list[str], params: Params, ctx_init: str
) -> Tensor:
    """`CustomCLIP.forward` in evaluation: logit_scale * cos(image, class text)."""
    depth = 1 + sum(1 for k in params if k.startswith("compound_prompts_text."))
    shared_ctx, deep_text, deep_vision = prompt_learner(params, depth)
    tokens = tokenized_prompts(tokenizer, classnames, ctx_init, params["ctx"].shape[0])
    text = F.normalize(text_encoder(model, tokens, params["ctx"], deep_text), dim=-1)
    image = F.normalize(image_encoder(model, images, shared_ctx, deep_vision), dim=-1)
    return model.logit_scale.exp() * image @ text.t()
