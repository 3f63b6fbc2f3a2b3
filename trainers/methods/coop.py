"""CoOp: Learning to Prompt for Vision-Language Models (Zhou et al., arXiv:2109.01134).

n learnable context vectors, shared by all classes, replace the template's words in front of the
class name at the text encoder's input: "[v1]...[vn] {class}.".

Knobs -> paper: prompt_length = M (n_ctx), init_text = the "a photo of a" initialisation.
Trainable parameters: prompt_length x text_width (8,192 for M=16 on ViT-B/16).
Deviation: only the unified (class-shared) context, as in base-to-new comparisons; class-specific
context cannot transfer to new classes.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class CoOpConfig(MethodConfig):
    prompt_length: int = 4  # 4 with "a photo of a" in base-to-new comparisons (16 in CoOp's own)


@register_method("coop")
class CoOp(PromptMethod):
    Config = CoOpConfig

    def __init__(self, cfg: CoOpConfig, dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        self.ctx = nn.Parameter(init_context(cfg, dims.text_width, embed_words))

    def plan(self, cond: Conditioning) -> PromptPlan:
        return PromptPlan(text={0: Edit(add=self.ctx, carry=0)})
