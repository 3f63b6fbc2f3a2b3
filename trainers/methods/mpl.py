"""MPL: Modular Prompt Learning Improves Vision-Language Models (arXiv:2502.14125).

Huang, Pedapati, Chen, Gao, ICASSP 2025.

Deep text prompts coupled to vision prompts by linear maps (text width -> vision width), as
MaPLe, plus three operations per layer: `add` prompts at a layer's input, and of the previous
layer's prompt outputs `remove` some and `carry` the rest (deep prompting removes all), so the
number of prompts varies across layers and earlier prompts survive.

design=official (the default) follows the authors' code, Zhenhan-Huang/Modular-Prompt-Learning:
- trainers/mpl.py ModularPromptLearner (l. 69-188): the text context is n "X" tokens in front of
  the whole "a photo of a" (l. 93), so the layer-0 text prompts start as the embedding of "X"
  (l. 97) and every class reads "X .. X a photo of a {class}." (l. 125); layer 0's vision prompts
  are `proj(ctx)` (l. 105, 188); each deeper layer has its own n text prompts, N(0, 0.02)
  (l. 110-113), and N_ADD_OP linear maps, each turning them into n vision prompts (l. 116-121,
  179-186); all deeper maps start as copies of one linear map (`_get_clones`, l. 116-120, 225).
- clip/model.py ResidualAttentionBlock_MPL (l. 336-391): the text branch is MaPLe's (the n
  prompts after SOS are replaced at layers 1..J-1, l. 380-387); the vision branch removes the
  last N_RM_OP tokens of the sequence (the newest prompts, l. 374) and appends the layer's
  n*N_ADD_OP new ones (l. 375-377), so layer i holds n + i*(n*N_ADD_OP - N_RM_OP) vision prompts.
  VisionTransformer_MultiModal (l. 509-541): layer-0 vision prompts follow the patches, before
  ln_pre; [CLS] is pooled. Past layer J-1 the prompts flow on.
- configs/trainers/MPL/vit_b4_c1_add2_rm1.yaml: N_CTX 1, N_ADD_OP 2, N_RM_OP 1, PROMPT_DEPTH 9,
  CTX_INIT "a photo of a"; SGD lr 0.0035, batch 4, 5 epochs, cosine, 1 constant warm-up epoch
  at 1e-5 (not method knobs: the trial's `optim.*`; `optim=mpl` selects this recipe).
Knobs -> official symbols: prompt_length = N_CTX (n), prompt_depth = PROMPT_DEPTH (J),
n_add = N_ADD_OP, n_remove = N_RM_OP, init_text = CTX_INIT, placeholder = the "X" word.
Trainable parameters: J*n*d_t + (1 + (J-1)*n_add)*(d_t*d_v + d_v)
(6,702,336 on ViT-B/16 at the defaults, as the official code).

design=both_branches (a variant, ablate's earlier reading of the paper): one schedule for both
branches, one [add, carry] pair per layer 0..J-1 (carried = the first `carry` incoming prompts,
then the added ones; removed = the rest), each layer's added text prompts coupled to as many
vision prompts by one linear map. `schedule` with preset=custom, or a `preset` from n and J:
  maple       [n, 0] at every layer: MaPLe exactly (same parameters -> identical logits);
  keep_first  [n, 0], then [n, n]: layer 0's n prompts are carried to the end;
  accumulate  [n, 0], then [n, n*i]: nothing is removed.
init_text's first n words initialise layer 0 and the rest stays frozen text (MaPLe).
Trainable parameters: sum_i add_i*d_t + #{i: add_i > 0}*(d_t*d_v + d_v).

Deviations from the official code: widths come from the backbone (it hard-codes 512 and 768);
precision is the loop's (it runs fp16); it allows N_RM_OP up to n*N_ADD_OP even where layer 1
holds fewer prompts (then patch tokens would be cut), which is rejected here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

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
    knob,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims

DESIGNS = ("official", "both_branches")
PRESETS = ("maple", "keep_first", "accumulate")


class LayerOps(NamedTuple):
    """What one prompted layer does: text prompts added and carried, vision maps and carry."""

    text_add: int  # new text prompts at this layer's input
    text_carry: int  # incoming text prompts kept
    vision_maps: int  # linear maps turning this layer's text prompts into new vision prompts
    vision_carry: int  # incoming vision prompts kept (the first ones)


@dataclass
class MPLConfig(MethodConfig):
    depth_knobs: ClassVar[tuple[str, ...]] = ("prompt_depth",)
    prompt_length: int = knob(1, "n: text prompts per layer (N_CTX); both_branches: a preset's add")
    init_text: str = knob(
        "a photo of a", "official: text after the prompts (CTX_INIT); both_branches: MaPLe's init"
    )
    design: str = knob("official", "official: the authors' code | both_branches: one schedule")
    prompt_depth: int = knob(9, "J: layers 0..J-1 get prompts (PROMPT_DEPTH)", minimum=1)
    n_add: int = knob(2, "official: maps per deeper layer, each adding n vision prompts (N_ADD_OP)")
    n_remove: int = knob(1, "official: newest vision prompts removed per deeper layer (N_RM_OP)")
    placeholder: str = knob("X", 'official: word whose embedding starts layer 0 ("" = random)')
    preset: str = knob("keep_first", "both_branches: maple | keep_first | accumulate | custom")
    schedule: list[list[int]] = knob([], "both_branches, preset=custom: [add, carry] per layer")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.design not in DESIGNS:
            raise ValueError(f"method.design {self.design!r} is not one of {DESIGNS}")
        if self.preset not in (*PRESETS, "custom"):
            raise ValueError(f"method.preset {self.preset!r} is not one of {PRESETS} or 'custom'")
        self.schedule = [list(step) for step in self.schedule]
        if self.schedule:
            schedule_counts(self.schedule)  # a given schedule must be valid whatever the design
        if self.design == "both_branches" and self.preset == "custom" and not self.schedule:
            raise ValueError("method.preset=custom needs method.schedule: [[add, carry], ...]")
        if self.design == "official":
            self._check_official()

    def _check_official(self) -> None:
        if self.prompt_length < 1:
            raise ValueError("method.prompt_length must be >= 1 with method.design=official")
        for key in ("n_add", "n_remove"):
            if getattr(self, key) < 0:
                raise ValueError(f"method.{key} must be >= 0, got {getattr(self, key)}")
        self.vision_counts()  # raises when a layer would remove more prompts than it holds

    def steps(self) -> list[tuple[int, ...]]:
        """both_branches: (add, carry) for layers 0..J-1."""
        n, depth = self.prompt_length, self.prompt_depth
        if self.preset == "maple":
            return [(n, 0)] * depth
        if self.preset == "keep_first":
            return [(n, 0)] + [(n, n)] * (depth - 1)
        if self.preset == "accumulate":
            return [(n, n * i) for i in range(depth)]
        return [tuple(step) for step in self.schedule]

    def counts(self) -> list[int]:
        """both_branches: prompts present in each scheduled layer."""
        return schedule_counts(self.steps())

    def vision_counts(self) -> list[int]:
        """official: vision prompts in layers 0..J-1; raises ValueError naming method.n_remove."""
        counts = [self.prompt_length]
        for layer in range(1, self.prompt_depth):
            if self.n_remove > counts[-1]:
                raise ValueError(
                    f"method.n_remove: layer {layer} cannot remove {self.n_remove} vision "
                    f"prompts, only {counts[-1]} present"
                )
            counts.append(counts[-1] - self.n_remove + self.n_add * self.prompt_length)
        return counts

    def layers(self) -> list[LayerOps]:
        """The operations of layers 0..J-1 under the chosen design."""
        if self.design == "both_branches":
            return [LayerOps(add, carry, int(add > 0), carry) for add, carry in self.steps()]
        n, counts = self.prompt_length, self.vision_counts()
        deeper = [LayerOps(n, 0, self.n_add, c - self.n_remove) for c in counts[:-1]]
        return [LayerOps(n, 0, 1, 0), *deeper]

    def text_counts(self) -> list[int]:
        return [op.text_add + op.text_carry for op in self.layers()]

    def check(self, dims: Dims) -> list[str]:
        custom = self.design == "both_branches" and self.preset == "custom"
        key = "method.schedule" if custom else "method.prompt_depth"
        depth, layers = min(dims.text_layers, dims.vision_layers), len(self.layers())
        if layers > depth:
            return [f"{key}: {layers} layers exceed the backbone's {depth} layers"]
        if max(self.text_counts()) > dims.context_length // 2:
            return [
                f"{key}: up to {max(self.text_counts())} text prompts at once leave too little "
                f"of the text context ({dims.context_length} tokens) for the class names"
            ]
        return []

    def inert_knobs(self) -> dict[str, str]:
        if self.design == "official":
            inert = dict.fromkeys(("preset", "schedule"), "read by design=both_branches only")
            if self.prompt_depth == 1:
                inert.update(dict.fromkeys(("n_add", "n_remove"), "no deeper layer (J = 1)"))
            return inert
        inert = dict.fromkeys(("n_add", "n_remove", "placeholder"), "read by design=official only")
        if self.preset != "custom":
            inert["schedule"] = "read only with preset=custom"
        else:
            fixed = "the custom schedule sets the counts"
            inert.update(dict.fromkeys(("prompt_length", "prompt_depth"), fixed))
        return inert


def schedule_counts(steps: list) -> list[int]:
    """Prompts present in each layer of an [add, carry] schedule; raises ValueError naming the
    bad step."""
    counts, present = [], 0
    for layer, step in enumerate(steps):
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


@register_method("mpl")
class MPL(PromptMethod):
    """MPL's prompts: per layer, text prompts and the linear maps that make vision prompts.

    Example:
        >>> cfg = MPLConfig(prompt_depth=3)  # official: n=1, add 2, remove 1
        >>> [op.vision_carry for op in cfg.layers()], cfg.vision_counts()
        ([0, 0, 1], [1, 2, 3])
    """

    revision = 2  # the published design: vision-only add/remove, a map per added block

    Config = MPLConfig

    def __init__(self, cfg: MPLConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        self.ops = cfg.layers()
        build = _official_parameters if cfg.design == "official" else _schedule_parameters
        prompts, couplings = build(cfg, self.ops, dims, embed_words)
        self.text_prompts = nn.ParameterDict({k: nn.Parameter(v) for k, v in prompts.items()})
        self.couplings = nn.ModuleDict(couplings)

    def class_text(self, template: str, classname: str) -> str:
        words = self.cfg.init_text.split()
        if self.cfg.design == "both_branches":  # MaPLe: the first words became the prompts
            words = words[self.ops[0].text_add :]
        return " ".join([*words, f"{classname}."])

    def plan(self, cond: Conditioning) -> PromptPlan:
        plan = PromptPlan()
        for layer, op in enumerate(self.ops):
            key = str(layer)
            text, maps = self.text_prompts.get(key), self.couplings[key]
            vision = torch.cat([m(text) for m in maps]) if len(maps) else None
            plan.text[layer] = Edit(add=text, carry=op.text_carry)
            plan.vision[layer] = Edit(add=vision, carry=op.vision_carry)
        return plan


Built = tuple[dict[str, torch.Tensor], dict[str, nn.ModuleList]]


def _official_parameters(
    cfg: MPLConfig, ops: list[LayerOps], dims: Dims, embed_words: EmbedWords
) -> Built:
    """The official initialisation, in its order: ctx from the placeholder word, proj, the
    deeper text prompts N(0, 0.02), then every deeper map a copy of one linear map."""
    n, dt, dv = cfg.prompt_length, dims.text_width, dims.vision_width
    placeholders = " ".join([cfg.placeholder] * n) if cfg.placeholder else ""
    ctx = init_context(MethodConfig(prompt_length=n, init_text=placeholders), dt, embed_words)
    prompts = {"0": ctx}
    couplings = {"0": nn.ModuleList([nn.Linear(dt, dv)])}
    for layer in range(1, len(ops)):
        prompts[str(layer)] = torch.randn(n, dt) * 0.02
    shared = nn.Linear(dt, dv)
    for layer, op in enumerate(ops[1:], start=1):
        couplings[str(layer)] = nn.ModuleList(copy.deepcopy(shared) for _ in range(op.vision_maps))
    return prompts, couplings


def _schedule_parameters(
    cfg: MPLConfig, ops: list[LayerOps], dims: Dims, embed_words: EmbedWords
) -> Built:
    """both_branches: MaPLe's initialisation for every layer that adds prompts."""
    words = MethodConfig(prompt_length=ops[0].text_add, init_text=cfg.init_text)
    prompts, couplings = {}, {str(layer): nn.ModuleList() for layer in range(len(ops))}
    for layer, op in enumerate(ops):
        if not op.text_add:  # a layer that only carries has nothing to learn
            continue
        if layer == 0:
            prompts["0"] = init_context(words, dims.text_width, embed_words)
        else:
            prompts[str(layer)] = torch.randn(op.text_add, dims.text_width) * 0.02
        couplings[str(layer)].append(nn.Linear(dims.text_width, dims.vision_width))
    return prompts, couplings
