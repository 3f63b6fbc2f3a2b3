"""MuDPT: Multi-modal Deep-symphysis Prompt Tuning (arXiv:2306.11400).

Full title: "MuDPT: Multi-modal Deep-symphysis Prompt Tuning for Large Pre-trained
Vision-Language Models".

Independent deep text prompts T_l (n x d_t) and vision prompts V_l (n x d_v) at layers 0..L-1 of
both encoders. Before insertion, one modality-agnostic injection model fuses them per layer: both
are mapped to a shared width h, a multi-head cross-attention block lets the text prompts attend to
the vision prompts and the vision prompts to the text prompts (the same attention weights serve
both directions: the block does not know which modality it reads), and the results are mapped back
and added to the original prompts: T'_l = T_l + out_t(t_l), V'_l = V_l + out_v(v_l), where
t_l, v_l = in_t(T_l), in_v(V_l) and then, per block, t, v = t + A(t; v), v + A(v; t).
A layer's prompts attend only to the same layer's prompts of the other modality.

Knobs -> paper: injection_depth = L, prompt_length = n, injection_heads / injection_width (h;
0 = the text width) / injection_layers = the injection model's size, bidirectional = the fusion
direction ablation (False: only the vision prompts receive text information, MaPLe's direction;
the text prompts go in unchanged and out_t does not exist), init_text = layer-0 text init.
Trainable parameters (h = injection_width or d_t, B = injection_layers):
L*n*(d_t + d_v) + (d_t*h + h) + (d_v*h + h) + B*(4*h*h + 4*h) + [bidirectional](h*d_t + d_t)
+ (h*d_v + d_v)   (2,386,688 on ViT-B/16 at the defaults).
Open details the paper leaves (our choices): one shared injection model for all layers, 1
cross-attention block, 8 heads, h = d_t, no layer norm, PyTorch's default Linear/attention init,
prompts (except layer-0 text, initialised from `init_text` as MaPLe) from N(0, 0.02); n = 2 and
L = 9 follow the independent V-L prompting baseline MuDPT extends. Prompts at layers 0..L-1
(L layers: "layers 0..L" in our notes would be 13 layers of a 12-layer encoder at L = 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from trainers.methods.base import (
    Conditioning,
    Edit,
    EmbedWords,
    MethodConfig,
    PromptMethod,
    PromptPlan,
    init_context,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims


@dataclass
class MuDPTConfig(MethodConfig):
    prompt_length: int = 2  # n
    injection_depth: int = 9  # L: layers 0..L-1 of both encoders get fused prompts
    injection_heads: int = 8
    injection_width: int = 0  # h: 0 = the backbone's text width
    injection_layers: int = 1  # cross-attention blocks in the injection model
    bidirectional: bool = True  # False: text -> vision only (ablation)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("prompt_length", "injection_depth", "injection_heads", "injection_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.injection_width < 0:
            raise ValueError(f"method.injection_width must be >= 0, got {self.injection_width}")

    def width(self, dims: Dims) -> int:
        return self.injection_width or dims.text_width

    def check(self, dims: Dims) -> list[str]:
        errors = []
        depth = min(dims.text_layers, dims.vision_layers)
        if self.injection_depth > depth:
            errors.append(
                f"method.injection_depth: {self.injection_depth} exceeds the backbone's "
                f"{depth} layers"
            )
        if self.width(dims) % self.injection_heads:
            errors.append(
                f"method.injection_heads: {self.injection_heads} does not divide the injection "
                f"width {self.width(dims)} (method.injection_width, 0 = text width)"
            )
        return errors


@register_method("mudpt")
class MuDPT(PromptMethod):
    Config = MuDPTConfig

    def __init__(self, cfg: MuDPTConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        if errors := cfg.check(dims):
            raise ValueError("; ".join(errors))
        depth, n, h = cfg.injection_depth, cfg.prompt_length, cfg.width(dims)
        first = init_context(cfg, dims.text_width, embed_words)
        deeper = torch.randn(depth - 1, n, dims.text_width) * 0.02
        self.text_prompts = nn.Parameter(torch.cat([first[None], deeper]))  # (L, n, d_t)
        self.vision_prompts = nn.Parameter(torch.randn(depth, n, dims.vision_width) * 0.02)
        self.text_in = nn.Linear(dims.text_width, h)
        self.vision_in = nn.Linear(dims.vision_width, h)
        self.blocks = nn.ModuleList(
            nn.MultiheadAttention(h, cfg.injection_heads, batch_first=True)
            for _ in range(cfg.injection_layers)
        )
        self.text_out = nn.Linear(h, dims.text_width) if cfg.bidirectional else None
        self.vision_out = nn.Linear(h, dims.vision_width)

    def inject(self, text: Tensor, vision: Tensor) -> tuple[Tensor, Tensor]:
        """Fused prompts: (L, n, d_t), (L, n, d_v) -> the same shapes (the layers are a batch)."""
        t, v = self.text_in(text), self.vision_in(vision)
        for attend in self.blocks:
            v_new = v + attend(v, t, t, need_weights=False)[0]
            if self.text_out is not None:
                t = t + attend(t, v, v, need_weights=False)[0]
            v = v_new
        fused_text = text if self.text_out is None else text + self.text_out(t)
        return fused_text, vision + self.vision_out(v)

    def plan(self, cond: Conditioning) -> PromptPlan:
        text, vision = self.inject(self.text_prompts, self.vision_prompts)
        plan = PromptPlan()
        for layer in range(len(text)):
            plan.text[layer] = Edit(add=text[layer], carry=0)
            plan.vision[layer] = Edit(add=vision[layer], carry=0)
        return plan
