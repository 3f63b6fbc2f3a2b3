"""MuDPT: Multi-modal Deep-symphysis Prompt Tuning (arXiv:2306.11400).

Full title: "MuDPT: Multi-modal Deep-symphysis Prompt Tuning for Large Pre-trained
Vision-Language Models". Official code: YzM1a0/MuDPT (an early release, commit 0d83ec5).

Independent deep text prompts T_l (n x d_t) and vision prompts V_l (n x d_v) at layers 0..L-1 of
both encoders, each fused with the other branch's prompts before insertion (deep replacement, as
MaPLe: a layer's prompts replace the previous layer's prompt outputs). Two couplings:

`injection: linear` (default, the official code) -- one linear map per direction, residual sum:
    layer 0:       T'_0 = T_0                        V'_0 = V_0 + P_0(T_0)
    layers 1..L-1: T'_l = T_l + Q(V_l)               V'_l = V_l + P(T_l)
  P_0, P: d_t -> d_v and Q: d_v -> d_t; P and Q are shared by the deep layers, and each reads the
  other branch's own (unfused) prompts. Followed from trainers/mudpt.py: `ctx` (l.57-71),
  `embed_projection` = P_0 (l.77, applied l.128), `deep_prompts` = T_1.. (l.78-79),
  `deep_projections` = P (l.81, applied l.127), vision -> text sum (l.175), the trainable set
  (l.206-212: prompt learner + every `visual_ctx*`); clip/model.py `VisionTransformer_MuDPT`
  (l.499-553): `visual_ctx` = V_0 (l.514, summed l.534, appended after the patches before ln_pre
  l.536), `visual_ctx_deep_prompts` = V_1.. (l.516, summed l.537), `visual_ctx_deep_projections`
  = Q (l.519, applied l.539); `ResidualAttentionBlock_MuDPT` (l.254-301) replaces the prompt
  tokens at the input of layers 1..L-1 (text after SOS, vision the last n tokens).
`injection: attention` (variant, the paper's injection model) -- both branches' prompts are
  mapped to width h, B multi-head cross-attention blocks (the same weights for both directions:
  the model is modality-agnostic) let text attend to vision and vision to text, and the results
  are mapped back and added: T'_l = T_l + out_t(t_l), V'_l = V_l + out_v(v_l), with
  t, v = in_t(T_l), in_v(V_l), then per block t, v = t + A(N(t); N(v)), v + A(N(v); N(t)) (N a
  layer norm shared by both branches, pre-norm as CLIP's blocks). Layers fuse independently (a
  layer's prompts attend only to the same layer's). The paper leaves the size open; our choices:
  one shared model, 1 block, 8 heads, h = d_t, pre-norm, PyTorch's default init.

Knobs -> official symbols: prompt_length = N_CTX (4), injection_depth = DEEP_PROMPT_DEPTH (9),
init_text = CTX_INIT ("a photo of a"), from configs/trainers/MuDPT/
vit_b16_bz4_ep10_nctx4_depth9.yaml, the config that scripts/mudpt/train_base2new.sh and
run_b16_cls.sh run (its recipe, `optim=mudpt`: SGD lr 0.0025, batch 4, 10 epochs, cosine, 1
constant warm-up epoch at 1e-5); its nctx2 sibling (prompt_length=2) and train.py's fallbacks
(N_CTX 2, depth 8) differ.
injection selects the coupling; bidirectional=False drops the vision -> text direction (Q, or
out_t); injection_heads / injection_width / injection_layers size the attention model and are
inert under `linear`.

Trainable parameters:
  linear:    L*n*(d_t + d_v) + (d_t*d_v + d_v) + [L > 1]((d_t*d_v + d_v) + [bi](d_v*d_t + d_t))
             (1,227,776 on ViT-B/16 at the defaults, as the official code counts them)
  attention: L*n*(d_t + d_v) + (d_t*h + h) + (d_v*h + h) + B*(4*h*h + 4*h + 2*h)
             + (h*d_v + d_v) + [bi](h*d_t + d_t)   (2,410,752 on ViT-B/16 at n = 4, L = 9).
Deviations from the official code: Q maps to the text width d_t (the official code maps to the
joint width `output_dim`, which equals d_t only on ViT-B/16); at L = 1 we build no P and Q (the
official code builds them but never uses them); the class text is the official one, "[n prompt
tokens] {class}." -- init_text's words past the first n are dropped (MaPLe keeps them as frozen
text); the deep prompts are N(0, 0.02) and the maps PyTorch's default init, as there. The released
configs set their values under TRAINER.MAPLE, which train.py never declares (yacs would reject
them); we take their numbers, not train.py's fallbacks.
"""

from __future__ import annotations

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
    init_context,
    knob,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims

INJECTIONS = ("linear", "attention")
ATTENTION_KNOBS = ("injection_heads", "injection_width", "injection_layers")


@dataclass
class MuDPTConfig(MethodConfig):
    depth_knobs: ClassVar[tuple[str, ...]] = ("injection_depth",)
    prompt_length: int = knob(
        4, "n: learnable tokens per prompted layer in each branch (N_CTX)", minimum=1
    )
    init_text: str = knob(
        "a photo of a", 'its first n words initialise the layer-0 text prompt; "" = random'
    )
    injection_depth: int = knob(9, "L: layers 0..L-1 of both encoders get fused prompts", minimum=1)
    injection: str = knob(
        "linear", "coupling: linear (official code, a map per direction) | attention (paper)"
    )
    bidirectional: bool = knob(True, "fuse vision -> text too (false: text -> vision only)")
    injection_heads: int = knob(
        8, "attention heads of the injection model (attention only)", minimum=1
    )
    injection_width: int = knob(0, "h, the injection model's width; 0 = text width (attention)")
    injection_layers: int = knob(
        1, "cross-attention blocks of the injection model (attention)", minimum=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.injection_width < 0:
            raise ValueError(f"method.injection_width must be >= 0, got {self.injection_width}")
        if self.injection not in INJECTIONS:
            raise ValueError(
                f"method.injection must be one of {', '.join(INJECTIONS)}, got {self.injection!r}"
            )

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
        if self.injection == "attention" and self.width(dims) % self.injection_heads:
            errors.append(
                f"method.injection_heads: {self.injection_heads} does not divide the injection "
                f"width {self.width(dims)} (method.injection_width, 0 = text width)"
            )
        return errors

    def inert_knobs(self) -> dict[str, str]:
        inert: dict[str, str] = {}
        if self.injection == "linear":
            inert = {key: "only the attention injection model has it" for key in ATTENTION_KNOBS}
            if self.injection_depth == 1:
                inert["bidirectional"] = "the linear coupling's layer 0 is text -> vision only"
        return inert


class LinearCoupling(nn.Module):
    """The official coupling: P_0 at layer 0, shared P and Q at layers 1..L-1 (see above)."""

    def __init__(self, dims: Dims, depth: int, bidirectional: bool) -> None:
        super().__init__()
        dt, dv = dims.text_width, dims.vision_width
        deep = depth > 1
        self.first_text_to_vision = nn.Linear(dt, dv)  # official `embed_projection`
        self.text_to_vision = nn.Linear(dt, dv) if deep else None  # `deep_projections`
        # official `visual_ctx_deep_projections` (to the joint width, = d_t on ViT-B/16)
        self.vision_to_text = nn.Linear(dv, dt) if deep and bidirectional else None

    def forward(self, text: Tensor, vision: Tensor) -> tuple[Tensor, Tensor]:
        """(L, n, d_t), (L, n, d_v) -> the fused prompts, same shapes."""
        first_vision = vision[:1] + self.first_text_to_vision(text[:1])
        if self.text_to_vision is None:
            return text, first_vision
        deep_text, deep_vision = text[1:], vision[1:]
        fused_vision = deep_vision + self.text_to_vision(deep_text)
        if self.vision_to_text is not None:
            deep_text = deep_text + self.vision_to_text(deep_vision)
        return torch.cat([text[:1], deep_text]), torch.cat([first_vision, fused_vision])


class AttentionInjection(nn.Module):
    """The paper's modality-agnostic injection model: shared cross-attention (see above)."""

    def __init__(self, cfg: MuDPTConfig, dims: Dims) -> None:
        super().__init__()
        h = cfg.width(dims)
        self.text_in = nn.Linear(dims.text_width, h)
        self.vision_in = nn.Linear(dims.vision_width, h)
        self.blocks = nn.ModuleList(
            nn.MultiheadAttention(h, cfg.injection_heads, batch_first=True)
            for _ in range(cfg.injection_layers)
        )
        # pre-norm, as CLIP's blocks: without it the N(0, 0.02) prompts give near-zero attention
        # scores, so every head averages uniformly and the head count would not matter at init
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(cfg.injection_layers))
        self.text_out = nn.Linear(h, dims.text_width) if cfg.bidirectional else None
        self.vision_out = nn.Linear(h, dims.vision_width)

    def forward(self, text: Tensor, vision: Tensor) -> tuple[Tensor, Tensor]:
        """(L, n, d_t), (L, n, d_v) -> the same shapes (the layers are a batch)."""
        t, v = self.text_in(text), self.vision_in(vision)
        for attend, norm in zip(self.blocks, self.norms):
            t_in, v_in = norm(t), norm(v)
            v_new = v + attend(v_in, t_in, t_in, need_weights=False)[0]
            if self.text_out is not None:
                t = t + attend(t_in, v_in, v_in, need_weights=False)[0]
            v = v_new
        fused_text = text if self.text_out is None else text + self.text_out(t)
        return fused_text, vision + self.vision_out(v)


@register_method("mudpt")
class MuDPT(PromptMethod):
    revision = 2  # the official linear coupling by default
    Config = MuDPTConfig

    def __init__(self, cfg: MuDPTConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        if errors := cfg.check(dims):
            raise ValueError("; ".join(errors))
        depth, n = cfg.injection_depth, cfg.prompt_length
        first = init_context(cfg, dims.text_width, embed_words)
        deeper = torch.randn(depth - 1, n, dims.text_width) * 0.02
        self.text_prompts = nn.Parameter(torch.cat([first[None], deeper]))  # (L, n, d_t)
        self.vision_prompts = nn.Parameter(torch.randn(depth, n, dims.vision_width) * 0.02)
        if cfg.injection == "linear":
            self.fusion: nn.Module = LinearCoupling(dims, depth, cfg.bidirectional)
        else:
            self.fusion = AttentionInjection(cfg, dims)

    def class_text(self, template: str, classname: str) -> str:
        # official prompt: "<first n init words> {class}." with those n replaced (mudpt.py l.84)
        return f"{classname}."

    def plan(self, cond: Conditioning) -> PromptPlan:
        text, vision = self.fusion(self.text_prompts, self.vision_prompts)
        plan = PromptPlan()
        for layer in range(len(text)):
            plan.text[layer] = Edit(add=text[layer], carry=0)
            plan.vision[layer] = Edit(add=vision[layer], carry=0)
        return plan
