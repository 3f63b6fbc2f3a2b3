"""An independent MoPE forward in plain PyTorch, written from the official code (songrise/MoPE,
models/swin.py `forward_mm_moe` l. 1683-1744 and `forward_features_instruct_multimodal_moe`
l. 1384-1441), run on an open_clip model's own pieces. Evaluation mode: no noise, no dropout.

`p` holds the method's tensors by their state-dict names; `cfg` is its MoPEConfig. Nothing here
calls trainers.prompted_clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def patch_tokens(visual, images: Tensor) -> Tensor:
    """[CLS] + patch embeddings + positions (B, 1 + grid^2, d_v)."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(len(x), 1, -1)
    return torch.cat([cls, x], dim=1) + visual.positional_embedding


def linear(p: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def mapped_prompt(p: dict[str, Tensor], cfg, c: Tensor) -> Tensor:
    """instruct token: GELU(W_out GELU(BN_eval(W_in c))), BN with its running statistics."""
    h = linear(p, "mapper.inp", c)
    mean, var = p["mapper.norm.running_mean"], p["mapper.norm.running_var"]
    h = (h - mean) / torch.sqrt(var + 1e-5) * p["mapper.norm.weight"] + p["mapper.norm.bias"]
    out = F.gelu(linear(p, "mapper.out", F.gelu(h)))
    return out.reshape(len(c), cfg.mapped_length, -1)


def routing(p: dict[str, Tensor], cfg, i: int, x: Tensor, c: Tensor) -> Tensor:
    """moe_scores of conditioned layer i from its input tokens x and the complementary c."""
    if not (cfg.dynamic_prompt and cfg.num_experts > 1):
        return torch.ones(len(c), 1)
    if cfg.router == "linear":
        logits = linear(p, f"routers.{i}.linear", c)
    else:
        pooled = x.mean(dim=1)  # AdaptiveAvgPool1d over every token of the block input
        joint = torch.cat(
            [linear(p, f"routers.{i}.own", pooled), linear(p, f"routers.{i}.complement", c)], 1
        )
        logits = joint @ p[f"routers.{i}.keys"]
    return torch.softmax(logits / cfg.router_temperature, dim=-1)


def layer_prompt(p, cfg, i: int, x: Tensor, c: Tensor, mapped: Tensor | None) -> Tensor:
    """cat(static, dynamic, instruct) as in forward_mm_moe."""
    parts = []
    if cfg.static_prompt:
        parts.append(p["static"][i].expand(len(c), -1, -1))
    if cfg.dynamic_prompt:
        scores = routing(p, cfg, i, x, c)
        parts.append(
            torch.einsum("bk,bknh->bnh", scores, p["experts"][i].expand(len(c), -1, -1, -1))
        )
    if mapped is not None:
        parts.append(mapped)
    return torch.cat(parts, dim=1)


def image_features(model, p: dict[str, Tensor], cfg, images: Tensor) -> Tensor:
    """Normalised prompted image features (B, D)."""
    visual = model.visual
    with torch.no_grad():
        c = F.normalize(model.encode_image(images), dim=-1)  # frozen prompt-free feature
    x = patch_tokens(visual, images)
    n = x.shape[1]
    x = torch.cat([x, p["input_prompt"].expand(len(x), -1, -1)], dim=1)
    x = visual.ln_pre(x)
    mapped = mapped_prompt(p, cfg, c) if cfg.mapped_prompt and cfg.prompt_depth > 1 else None
    for layer, block in enumerate(visual.transformer.resblocks):
        if 0 < layer < cfg.prompt_depth:
            x = torch.cat([x[:, :n], layer_prompt(p, cfg, layer - 1, x, c, mapped)], dim=1)
        x = block(x)
    pooled = visual.ln_post(x)[:, 0]  # 'tok' pooling, LayerNorm before the pool
    return F.normalize(pooled @ visual.proj, dim=-1)


def logits(model, tokenizer, p, cfg, images: Tensor, classnames, template: str) -> Tensor:
    """MoPE's logits: prompted image features against the frozen hand-written template."""
    with torch.no_grad():
        ids = tokenizer([template.format(name) for name in classnames])
        text = F.normalize(model.encode_text(ids), dim=-1)
    return model.logit_scale.exp() * image_features(model, p, cfg, images) @ text.T
