"""Zero-shot CLIP (Radford et al., arXiv:2103.00020): the hand-written template, nothing learned.

The reference row of every base-to-new table, and the engine's invariant: with no prompts the
prompted forward equals open_clip's own `encode_text` / `encode_image` logits.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.methods.base import Conditioning, MethodConfig, PromptMethod, PromptPlan
from trainers.registry import register_method


@dataclass
class ZeroShotConfig(MethodConfig):
    prompt_length: int = 0
    init_text: str = ""


@register_method("zeroshot")
class ZeroShot(PromptMethod):
    Config = ZeroShotConfig

    def class_text(self, template: str, classname: str) -> str:
        return template.format(classname)

    def plan(self, cond: Conditioning) -> PromptPlan:
        return PromptPlan()
