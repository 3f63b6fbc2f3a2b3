"""MPL: Modular Prompt Learning Improves Vision-Language Models (Huang, Pedapati, Chen, Gao).

Deep text prompts coupled to vision prompts by one linear map per layer (text width -> vision
width), as MaPLe, plus three operations per layer: at a layer's input `add` new prompts, and of
the previous layer's prompt outputs `carry` some on and remove the rest (deep prompting removes
all). The number of prompts therefore varies across layers, and earlier prompts can survive.
Both branches follow the same schedule; carried prompts are the first `carry` incoming ones (the
oldest), then the added ones follow. Past the schedule the prompts flow on unchanged.

Knobs -> paper: the carry schedule (one [add, carry] pair per layer 0..J-1; removed = present -
carry) is `schedule` with preset=custom, or a named `preset` built from prompt_length = n and
prompt_depth = J:
  maple       [n, 0] at every layer: MaPLe exactly (same parameters -> identical logits);
  keep_first  [n, 0], then [n, n]: layer 0's n prompts are carried to the end, n fresh per layer;
  accumulate  [n, 0], then [n, n*i]: nothing is removed, n*(i+1) prompts at layer i.
init_text: the first words initialise the layer-0 prompts; the rest stays frozen text (MaPLe).
Trainable parameters: sum_i add_i*d_t + #{i: add_i > 0}*(d_t*d_v + d_v)
(3,555,072 on ViT-B/16 at the defaults, as MaPLe: every preset adds n at each of J layers).
Deviations: the paper's exact schedule is not pinned by our notes; keep_first is our default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from trainers.backbone import Dims

PRESETS = ("maple", "keep_first", "accumulate")


@dataclass
class MPLConfig(MethodConfig):
    prompt_length: int = 2  # n: prompts a preset adds per layer
    prompt_depth: int = 9  # J: layers a preset prompts
    preset: str = "keep_first"  # maple | keep_first | accumulate | custom (use `schedule`)
    schedule: list[list[int]] = field(default_factory=list)  # custom: [add, carry] per layer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_depth < 1:
            raise ValueError(f"method.prompt_depth must be >= 1, got {self.prompt_depth}")
        if self.preset not in (*PRESETS, "custom"):
            raise ValueError(f"method.preset {self.preset!r} is not one of {PRESETS} or 'custom'")
        if self.schedule and self.preset != "custom":
            raise ValueError(
                f"method.schedule is given: set method.preset=custom, not {self.preset}"
            )
        if self.preset == "custom" and not self.schedule:
            raise ValueError("method.preset=custom needs method.schedule: [[add, carry], ...]")
        self.schedule = [list(step) for step in self.schedule]
        self.counts()  # raises on an invalid schedule

    def steps(self) -> list[tuple[int, ...]]:
        """(add, carry) for layers 0..J-1."""
        n, depth = self.prompt_length, self.prompt_depth
        if self.preset == "maple":
            return [(n, 0)] * depth
        if self.preset == "keep_first":
            return [(n, 0)] + [(n, n)] * (depth - 1)
        if self.preset == "accumulate":
            return [(n, n * i) for i in range(depth)]
        return [tuple(step) for step in self.schedule]

    def counts(self) -> list[int]:
        """Prompts present in each scheduled layer; raises ValueError naming the bad step."""
        counts, present = [], 0
        for layer, step in enumerate(self.steps()):
            where = f"method.schedule[{layer}]"
            ok = len(step) == 2 and all(isinstance(v, int) and v >= 0 for v in step)
            if not ok:
                raise ValueError(f"{where}: expected [add, carry], two integers >= 0, got {step}")
            add, carry = step
            if carry > present:
                raise ValueError(f"{where}: cannot carry {carry} prompts, only {present} present")
            present = carry + add
            counts.append(present)
        return counts

    def check(self, dims: Dims) -> list[str]:
        key = "method.schedule" if self.preset == "custom" else "method.prompt_depth"
        depth = min(dims.text_layers, dims.vision_layers)
        if len(self.steps()) > depth:
            return [f"{key}: {len(self.steps())} layers exceed the backbone's {depth} layers"]
        if max(self.counts()) > dims.context_length // 2:
            return [
                f"{key}: up to {max(self.counts())} prompts at once leave too little of the "
                f"text context ({dims.context_length} tokens) for the class names"
            ]
        return []


@register_method("mpl")
class MPL(PromptMethod):
    Config = MPLConfig

    def __init__(self, cfg: MPLConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        self.steps = cfg.steps()
        self.first = self.steps[0][0]
        words = MethodConfig(prompt_length=self.first, init_text=cfg.init_text)
        prompts, couplings = {}, {}
        for layer, (add, _) in enumerate(self.steps):
            if not add:  # a layer that only carries has nothing to learn
                continue
            if layer == 0:
                prompts["0"] = init_context(words, dims.text_width, embed_words)
            else:
                prompts[str(layer)] = torch.randn(add, dims.text_width) * 0.02
            couplings[str(layer)] = nn.Linear(dims.text_width, dims.vision_width)
        self.text_prompts = nn.ParameterDict({k: nn.Parameter(v) for k, v in prompts.items()})
        self.couplings = nn.ModuleDict(couplings)

    def class_text(self, template: str, classname: str) -> str:
        tail = " ".join(self.cfg.init_text.split()[self.first :])
        return f"{tail} {classname}.".strip()

    def plan(self, cond: Conditioning) -> PromptPlan:
        plan = PromptPlan()
        for layer, (_, carry) in enumerate(self.steps):
            key = str(layer)
            text = self.text_prompts.get(key)
            vision = self.couplings[key](text) if text is not None else None
            plan.text[layer] = Edit(add=text, carry=carry)
            plan.vision[layer] = Edit(add=vision, carry=carry)
        return plan
