"""Zero-shot CLIP (Radford et al., arXiv:2103.00020): the hand-written template, nothing learned.

The reference row of every base-to-new table, and the engine's invariant: with no prompts the
prompted forward equals open_clip's own `encode_text` / `encode_image` logits.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.methods.base import Conditioning, MethodConfig, PromptMethod, PromptPlan, knob
from trainers.registry import register_method


@dataclass
class ZeroShotConfig(MethodConfig):
    prompt_length: int = knob(0, "unused: zero-shot CLIP learns no prompt")
    init_text: str = knob("", "unused: the prompt is dataset.template")

    def inert_knobs(self) -> dict[str, str]:
        return {
            "prompt_length": "zero-shot CLIP learns no prompt",
            "init_text": "zero-shot CLIP reads dataset.template only",
        }


@register_method("zeroshot")
class ZeroShot(PromptMethod):
    Config = ZeroShotConfig

    def class_text(self, template: str, classname: str) -> str:
        return template.format(classname)

    def plan(self, cond: Conditioning) -> PromptPlan:
        return PromptPlan()
