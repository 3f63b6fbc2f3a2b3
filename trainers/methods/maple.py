"""MaPLe: Multi-modal Prompt Learning (Khattak et al., arXiv:2210.03117).

Deep text prompts at layers 0..J-1; each layer's text prompt is coupled to that layer's vision
prompt by its own linear map (text_width -> vision_width). At every prompted layer the prompt
tokens replace the previous layer's prompt outputs; past depth J they flow on unchanged.

Knobs -> paper: prompt_length = b (2), prompt_depth = J (9), init_text = "a photo of a" (its first
b words initialise layer 0; the remaining words stay as frozen text, as in MaPLe's code).
Trainable parameters: J*b*d_t + J*(d_t*d_v + d_v) (about 3.55M on ViT-B/16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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


@dataclass
class MaPLeConfig(MethodConfig):
    prompt_length: int = 2
    prompt_depth: int = 9  # J: layers 0..J-1 of both encoders get prompts

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_depth < 1:
            raise ValueError(f"method.prompt_depth must be >= 1, got {self.prompt_depth}")

    def check(self, dims) -> list[str]:
        depth = min(dims.text_layers, dims.vision_layers)
        if self.prompt_depth > depth:
            return [
                f"method.prompt_depth: {self.prompt_depth} exceeds the backbone's {depth} layers"
            ]
        return []


@register_method("maple")
class MaPLe(PromptMethod):
    Config = MaPLeConfig

    def __init__(self, cfg: MaPLeConfig, dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        first = init_context(cfg, dims.text_width, embed_words)
        deeper = torch.randn(cfg.prompt_depth - 1, cfg.prompt_length, dims.text_width) * 0.02
        self.text_prompts = nn.Parameter(torch.cat([first[None], deeper]))  # (J, b, d_t)
        self.couplings = nn.ModuleList(
            nn.Linear(dims.text_width, dims.vision_width) for _ in range(cfg.prompt_depth)
        )

    def plan(self, cond: Conditioning) -> PromptPlan:
        plan = PromptPlan()
        for layer, (prompt, coupling) in enumerate(zip(self.text_prompts, self.couplings)):
            plan.text[layer] = Edit(add=prompt, carry=0)
            plan.vision[layer] = Edit(add=coupling(prompt), carry=0)
        return plan
