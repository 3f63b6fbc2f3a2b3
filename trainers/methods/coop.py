"""CoOp: Learning to Prompt for Vision-Language Models (Zhou et al., arXiv:2109.01134).

Learnable context vectors, shared by all classes, replace the template's words in front of the
class name at the text encoder's input: "[SOS] [v1]...[vn] {class}. [EOT]".

Official code followed: KaiyangZhou/CoOp `trainers/coop.py` (`PromptLearner.__init__` lines
60-116: the context and its initialisation; `forward` lines 118-134, class token at the end;
`TextEncoder.forward` lines 46-57), `train.py` lines 90-95 (the defaults N_CTX=16, CSC=False,
CTX_INIT="", CLASS_TOKEN_POSITION="end") and `configs/trainers/CoOp/vit_b16.yaml` with
`scripts/coop/main.sh` (ViT-B/16, SGD lr 0.002, 200 epochs, batch 32): CoOp's own setting, the
default here. `vit_b16_ctxv1.yaml` (CTX_INIT "a photo of a") is the variant `init_text`.

Knobs -> code: prompt_length = N_CTX (n), init_text = CTX_INIT. As in the code, an init text
sets the context itself: n is its length and the vectors are its token embeddings (so
`prompt_length` is inert then); without one, n vectors are drawn from N(0, 0.02).
Trainable parameters: n x d_t (8,192 at n=16 on ViT-B/16; 2,048 with "a photo of a").
On a backbone whose context is shorter than 32 tokens (tiny_clip: 16) the default n=16 becomes
half the context (`for_backbone`), so that class names fit; any other value is kept.
Deviations: only the unified context with the class token at the end (CoOp's default): the
class-specific context (CSC) and the "middle"/"front" class token positions are not exposed.
The code counts the init text's words (`len(ctx_init.split(" "))`) and learns that many of its
token embeddings; we learn all its tokens, which is the same for words that are one token each.
"""

from __future__ import annotations

import dataclasses
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
    knob,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims


@dataclass
class CoOpConfig(MethodConfig):
    prompt_length: int = knob(16, "random context vectors (N_CTX) when init_text is empty")
    init_text: str = knob("", 'words that become the context (their length is n); "" = random')

    def n_ctx(self) -> int:
        """Context vectors: the init text's words (one token each), else prompt_length."""
        return len(self.init_text.split()) or self.prompt_length

    def check(self, dims: Dims) -> list[str]:
        if self.n_ctx() + 3 > dims.context_length:  # + SOS, a one-token class name, EOT
            return [
                f"method.prompt_length: {self.n_ctx()} context tokens leave no room for the "
                f"class name in the backbone's {dims.context_length}-token context"
            ]
        return []

    def for_backbone(self, dims: Dims) -> CoOpConfig:
        """The default 16 vectors on a short-context backbone (tiny_clip: 16 tokens) become half
        its context, leaving the other half to the class name."""
        cfg = super().for_backbone(dims)
        half = dims.context_length // 2
        at_default = cfg.prompt_length == type(self)().prompt_length
        if at_default and not cfg.init_text.split() and cfg.prompt_length > half:
            return dataclasses.replace(cfg, prompt_length=half)
        return cfg

    def inert_knobs(self) -> dict[str, str]:
        if self.init_text.split():
            return {"prompt_length": "init_text sets the context length, as CoOp's code does"}
        return {}


@register_method("coop")
class CoOp(PromptMethod):
    Config = CoOpConfig
    revision = 2  # 16 random context vectors by default; an init text sets the length

    def __init__(self, cfg: CoOpConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        self.ctx = nn.Parameter(initial_context(cfg, dims.text_width, embed_words))

    def class_text(self, template: str, classname: str) -> str:
        return f"{classname}."  # the whole init text became the context

    def plan(self, cond: Conditioning) -> PromptPlan:
        return PromptPlan(text={0: Edit(add=self.ctx, carry=0)})


def initial_context(cfg: CoOpConfig, width: int, embed_words: EmbedWords) -> Tensor:
    """The token embeddings of `init_text`, or `prompt_length` N(0, 0.02) vectors without one."""
    if cfg.init_text.split():
        return embed_words(" ".join(cfg.init_text.split())).clone()
    return torch.randn(cfg.n_ctx(), width) * 0.02
