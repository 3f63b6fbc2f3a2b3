"""MaPLe: Multi-modal Prompt Learning (Khattak et al., arXiv:2210.03117).

Deep text prompts at layers 0..J-1; each layer's text prompt is coupled to that layer's vision
prompt by its own linear map (text_width -> vision_width). At every prompted layer the prompt
tokens replace the previous layer's prompt outputs; past depth J they flow on unchanged.

Official code followed: muzairkhattak/multimodal-prompt-learning `trainers/maple.py`
(`MultiModalPromptLearner.__init__` lines 70-136: the init and the couplings; `forward` lines
159-176), `clip/model.py` (`ResidualAttentionBlock_MaPLe.forward` lines 287-331: deep prompts
replace the previous layer's; `VisionTransformer_MaPLe.forward` lines 445-476: layer-0 vision
prompts appended after the patches, before `ln_pre`) and
`configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml` (N_CTX 2, CTX_INIT "a photo of a",
PROMPT_DEPTH 9; SGD lr 0.0035, 5 epochs, batch 4), the default here.

Knobs -> code: prompt_length = N_CTX (b), prompt_depth = PROMPT_DEPTH (J), init_text = CTX_INIT.
Init as the code: layer 0's text prompt is the embeddings of the first b words of the init text
(the remaining words stay as frozen text: "[ctx] of a {class}."), or N(0, 0.02) when the text is
shorter than b; deeper text prompts are N(0, 0.02); layer 0's coupling (`proj`) has its own
init and the J-1 deeper couplings start as copies of one linear map (`_get_clones`).
Trainable parameters: J*b*d_t + J*(d_t*d_v + d_v) (3,555,072 on ViT-B/16).
Deviations: the code tests `n_ctx <= 4` (the length of its init text) before using the words;
we test b <= the init text's length, the same for "a photo of a". No fp16 casts (`.half()`):
precision is the loop's autocast.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from trainers.methods.base import (
    Conditioning,
    Edit,
    EmbedWords,
    MethodConfig,
    PromptMethod,
    PromptPlan,
    knob,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims


@dataclass
class MaPLeConfig(MethodConfig):
    depth_knobs: ClassVar[tuple[str, ...]] = ("prompt_depth",)

    prompt_length: int = knob(2, "prompt tokens per layer and branch (N_CTX, b)")
    init_text: str = knob(
        "a photo of a", 'its first b words initialise layer 0, the rest stay text; "" = random'
    )
    prompt_depth: int = knob(9, "layers 0..J-1 of both encoders get coupled prompts (J)", minimum=1)

    def check(self, dims: Dims) -> list[str]:
        depth = min(dims.text_layers, dims.vision_layers)
        if self.prompt_depth > depth:
            return [
                f"method.prompt_depth: {self.prompt_depth} exceeds the backbone's {depth} layers"
            ]
        return []


@register_method("maple")
class MaPLe(PromptMethod):
    Config = MaPLeConfig
    revision = 2  # deeper couplings start as copies; words or noise, never both, at layer 0

    def __init__(self, cfg: MaPLeConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        first = first_prompt(cfg, dims.text_width, embed_words)
        deeper = torch.randn(cfg.prompt_depth - 1, cfg.prompt_length, dims.text_width) * 0.02
        self.text_prompts = nn.Parameter(torch.cat([first[None], deeper]))  # (J, b, d_t)
        self.couplings = couplings(dims.text_width, dims.vision_width, cfg.prompt_depth)

    def plan(self, cond: Conditioning) -> PromptPlan:
        plan = PromptPlan()
        for layer, (prompt, coupling) in enumerate(zip(self.text_prompts, self.couplings)):
            plan.text[layer] = Edit(add=prompt, carry=0)
            plan.vision[layer] = Edit(add=coupling(prompt), carry=0)
        return plan


def first_prompt(cfg: MethodConfig, width: int, embed_words: EmbedWords) -> Tensor:
    """Layer 0's text prompt: the first b words' embeddings, or N(0, 0.02) if there are fewer."""
    words = cfg.init_text.split()
    if words and cfg.prompt_length <= len(words):
        return embed_words(" ".join(words))[: cfg.prompt_length].clone()
    return torch.randn(cfg.prompt_length, width) * 0.02


def couplings(text_width: int, vision_width: int, depth: int) -> nn.ModuleList:
    """Layer 0's map with its own init, then depth-1 copies of one map (the code's clones)."""
    deeper = nn.Linear(text_width, vision_width)
    first = nn.Linear(text_width, vision_width)
    return nn.ModuleList([first, *(copy.deepcopy(deeper) for _ in range(depth - 1))])
