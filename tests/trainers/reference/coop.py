"""CoOp's official forward (KaiyangZhou/CoOp, trainers/coop.py), re-written in plain PyTorch for
the tests.

Written from reading `PromptLearner` (lines 60-182: the context, its initialisation, the
SOS/suffix buffers, class token at the end), `TextEncoder.forward` (lines 46-57) and
`CustomCLIP.forward` (lines 195-208, CLIP's own image encoder); it runs the open_clip model's
pieces itself on full-length token sequences and shares nothing with `trainers.prompted_clip`.
Parameters carry the official name: `ctx` (n_ctx, d_t) unified, or (n_cls, n_ctx, d_t) CSC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def n_ctx_and_prefix(ctx_init: str, n_ctx: int) -> tuple[int, str]:
    """With CTX_INIT the context is its words (N_CTX ignored); without, N_CTX "X" placeholders."""
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        return len(ctx_init.split(" ")), ctx_init
    return n_ctx, " ".join(["X"] * n_ctx)


@torch.no_grad()
def initial_ctx(model, tokenizer, ctx_init: str) -> Tensor:
    """The context initialised from CTX_INIT: its token embeddings after SOS."""
    n_ctx, prefix = n_ctx_and_prefix(ctx_init, 0)
    return model.token_embedding(tokenizer([prefix]))[0, 1 : 1 + n_ctx]


def tokenized_prompts(tokenizer, classnames: list[str], ctx_init: str, n_ctx: int) -> Tensor:
    _, prefix = n_ctx_and_prefix(ctx_init, n_ctx)
    return tokenizer([f"{prefix} {name.replace('_', ' ')}." for name in classnames])


def prompt_learner(model, tokens: Tensor, ctx: Tensor) -> Tensor:
    """`PromptLearner.forward`, class_token_position "end": [SOS] [ctx] [class . EOT pad]."""
    embedding = model.token_embedding(tokens)
    n_ctx = ctx.shape[-2]
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(len(tokens), -1, -1)
    return torch.cat([embedding[:, :1], ctx, embedding[:, 1 + n_ctx :]], dim=1)


def text_encoder(model, prompts: Tensor, tokens: Tensor) -> Tensor:
    x = prompts + model.positional_embedding
    for block in model.transformer.resblocks:  # open_clip's blocks are batch first
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection


def image_encoder(model, images: Tensor) -> Tensor:
    """CLIP's VisionTransformer.forward: [CLS] + patches, ln_pre, blocks, ln_post([CLS]), proj."""
    visual = model.visual
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks:
        x = block(x)
    return visual.ln_post(x[:, 0, :]) @ visual.proj


@torch.no_grad()
def logits(
    model, tokenizer, images: Tensor, classnames: list[str], ctx: Tensor, ctx_init: str
) -> Tensor:
    """`CustomCLIP.forward`: logit_scale * cos(image, class text) with the context `ctx`."""
    tokens = tokenized_prompts(tokenizer, classnames, ctx_init, ctx.shape[-2])
    text = F.normalize(text_encoder(model, prompt_learner(model, tokens, ctx), tokens), dim=-1)
    image = F.normalize(image_encoder(model, images), dim=-1)
    return model.logit_scale.exp() * image @ text.t()
