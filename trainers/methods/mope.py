"""MoPE: Conditional Prompt Tuning for Multimodal Fusion (Jiang et al., arXiv:2312.03734).

Ruixiang Jiang, Lingbo Liu, Chang Wen Chen; the official code (songrise/MoPE, released with the
follow-up "MoPE: Mixture of Prompt Experts for Parameter-Efficient and Scalable Multimodal
Fusion", arXiv:2403.10568) is the reference. Followed: models/swin.py
`PromptedSwinTransformerBlock.forward_mm_moe` (l. 1683-1744: router, dynamic prompt, prompt
order, importance loss), `PromptedSwinTransformerBlock.__init__` (l. 1581-1589: the projections
and the frozen orthogonal expert keys), `PromptedSwinTransformer.__init__` / `_init_prompt`
(l. 1023-1105: input prompt, experts with expert 0 as the static prompt, uniform init, the shared
mapper), `forward_features_instruct_multimodal_moe` (l. 1384-1441), `BasicLayer.forward`
(l. 604-632: the first block takes the input prompt, later blocks the conditioned ones), `train`
(l. 1140-1152: the mapper's BatchNorm stays in eval mode, prompt dropout is on); main_classify.py
(defaults: prompt_length 6, moe_n_experts 4, d_cross 8, d_inter 2, w_imp 0.01).

Layer 0 gets a learned input prompt (s + n + m tokens, instance-independent). Each later prompted
layer l = 1..J-1 replaces the prompts by the concatenation [static S_l; dynamic; mapped]:
- dynamic = sum_j r_lj E_lj over k experts, r_l = softmax(([P_l mean(x_l); Q_l c] K_l) / tau + eps)
  with x_l the layer's input tokens (own modality, mean over [CLS], patches and prompts), c the
  complementary feature, P_l: d_v -> d_inter and Q_l: D -> d_cross trained, K_l a frozen random
  orthonormal (d_inter + d_cross, k) key matrix, tau = 0.1, eps ~ N(0, 1/256^2) in training;
- mapped = dropout(GELU(W_out GELU(BN(W_in c)))): a mapper shared by all layers (one Swin stage's
  projection; a ViT has one stage), BN in eval mode as the official code leaves it.
Importance loss: mean over layers of CV^2 (unbiased std) of sum_b r_lb, zeroed where <= 0.1,
times balance_weight.

The complementary feature c on CLIP image classification (no paired text): the image's frozen,
normalised CLIP feature ([CLS] after ln_post and proj) from a prompt-free forward: like the
official complementary [CLS], a global feature from a separate frozen pass, while the own-modality
half of the router reads the prompted hidden states layer by layer as in the official code. The
text branch stays the frozen hand-written template. On the paper's fusion datasets
(trainers.fusion) c is the paired text's frozen CLIP feature, the true complementary modality.

Knobs -> official symbols: prompt_length = prompt_length (n), static_length = prompt_length of
expert 0 (s), mapped_length = the one instruct token (m), num_experts = moe_n_experts (k),
router_temperature = temperature, router_noise = the noise std 1/16**2, router_self_dim = d_inter,
router_cross_dim = d_cross, mapper_width = 384, prompt_dropout = prompt_dropout, balance_weight =
w_imp, balance_threshold = threshold, prompt_depth = prompted blocks (J). Variant:
router="linear" (softmax of a per-layer linear map of c / tau, our earlier design).
Trainable parameters: the formula in docs/methods.md; 818,926 on ViT-B/16 at the defaults.
Deviations: noise and dropout only in training (the official code adds the routing noise in
evaluation too); the noise and dropout draws come from a per-seed generator (seed and step in
buffers) so that fused and single seeds, and resumed runs, draw the same; prompts are appended
after the patches (the engine's layout) instead of prepended, and the layer-0 input prompt goes
through CLIP's ln_pre (MaPLe's placement; Swin has no ln_pre); c is unit-normalised (CLIP's
feature space) where the official code feeds BERT's raw [CLS], whose norm is ~10-20x larger, so
the cross half of the router and the mapper start with smaller inputs.
"""

from __future__ import annotations

from collections.abc import Callable
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
from trainers.methods.mope_routing import (
    KeyRouter,
    LinearRouter,
    Mapper,
    gaussian,
    importance_loss,
    record,
    routing_entropy,
    uniform,
    vpt_init_bound,
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims

ROUTERS = ("keys", "linear")
ROUTER_KNOBS = ("router", "router_temperature", "router_noise", "router_self_dim")
ROUTER_KNOBS += ("router_cross_dim", "balance_weight", "balance_threshold")


@dataclass
class MoPEConfig(MethodConfig):
    depth_knobs: ClassVar[tuple[str, ...]] = ("prompt_depth",)
    prompt_length: int = knob(6, "n: tokens of each prompt expert (the dynamic prompt)")
    init_text: str = knob("", "unused: the text branch is the hand-written template")
    num_experts: int = knob(4, "k: prompt experts per prompted layer", minimum=1)
    router: str = knob("keys", "keys: own+complementary features vs frozen keys; linear: W c")
    router_temperature: float = knob(0.1, "tau: routing logits are divided by it")
    router_noise: float = knob(
        1 / 256, "std of the noise added to the routing logits (training)", minimum=0
    )
    router_self_dim: int = knob(
        2, "d_inter: projection of the layer's pooled tokens (keys)", minimum=1
    )
    router_cross_dim: int = knob(
        8, "d_cross: projection of the complementary feature (keys)", minimum=1
    )
    static_prompt: bool = knob(True, "static prompt: learned, the same for every image")
    dynamic_prompt: bool = knob(True, "dynamic prompt: the routed mixture of prompt experts")
    mapped_prompt: bool = knob(True, "mapped prompt: the complementary feature through a mapper")
    static_length: int = knob(6, "s: tokens of the static prompt")
    mapped_length: int = knob(1, "m: tokens of the mapped prompt")
    mapper_width: int = knob(384, "h: hidden width of the shared mapper", minimum=1)
    prompt_dropout: float = knob(0.1, "dropout on the input and mapped prompts (training)")
    balance_weight: float = knob(0.01, "weight of the importance (balance) loss", minimum=0)
    balance_threshold: float = knob(
        0.1, "importance loss counts only where CV^2 exceeds it", minimum=0
    )
    prompt_depth: int = knob(
        12, "J: layer 0 gets the input prompt, 1..J-1 conditioned prompts", minimum=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.router not in ROUTERS:
            raise ValueError(f"method.router must be one of {ROUTERS}, got {self.router!r}")
        if self.router_temperature <= 0:
            raise ValueError(
                f"method.router_temperature must be > 0, got {self.router_temperature}"
            )
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"method.prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        kinds = {"static": "static_length", "dynamic": "prompt_length", "mapped": "mapped_length"}
        if not any(getattr(self, f"{kind}_prompt") for kind in kinds):
            raise ValueError("method.static_prompt/dynamic_prompt/mapped_prompt: turn one on")
        for kind, length in kinds.items():
            if getattr(self, f"{kind}_prompt") and getattr(self, length) < 1:
                raise ValueError(f"method.{length} must be >= 1 while method.{kind}_prompt is on")

    @property
    def routed(self) -> bool:
        """Whether a router exists: dynamic prompts with a choice of experts, past layer 0."""
        return self.dynamic_prompt and self.num_experts > 1 and self.prompt_depth > 1

    def prompt_tokens(self) -> int:
        """Prompt tokens at every prompted layer: s + n + m of the kinds that are on."""
        return (
            self.static_prompt * self.static_length
            + self.dynamic_prompt * self.prompt_length
            + self.mapped_prompt * self.mapped_length
        )

    def check(self, dims: Dims) -> list[str]:
        if self.prompt_depth > dims.vision_layers:
            return [
                f"method.prompt_depth: {self.prompt_depth} exceeds the backbone's "
                f"{dims.vision_layers} vision layers"
            ]
        return []

    def inert_knobs(self) -> dict[str, str]:
        inert = {"init_text": "the text branch is the hand-written template"}
        if self.prompt_depth == 1:
            why = "prompt_depth 1: only the input prompt, nothing is conditioned"
            keys = (*ROUTER_KNOBS, "num_experts", "mapper_width")
            return inert | dict.fromkeys(keys, why)
        if not self.dynamic_prompt:
            inert |= dict.fromkeys((*ROUTER_KNOBS, "num_experts"), "dynamic_prompt is off")
        elif self.num_experts == 1:
            inert |= dict.fromkeys(ROUTER_KNOBS, "one expert: its weight is always 1")
        if self.routed and self.router == "linear":
            why = "the linear router reads only the complementary feature"
            inert |= dict.fromkeys(("router_self_dim", "router_cross_dim"), why)
        if self.routed and self.balance_weight == 0:
            inert["balance_threshold"] = "balance_weight is 0"
        if not self.mapped_prompt:
            inert["mapper_width"] = "mapped_prompt is off"
        return inert


@register_method("mope")
class MoPE(PromptMethod):
    revision = 2  # the official router (keys, tau 0.1, noise), thresholded loss, shared mapper
    Config = MoPEConfig
    needs_image = True
    uses_paired_text = True  # fusion datasets: conditioned on the text, no image feature needed

    def __init__(self, cfg: MoPEConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        # training noise and dropout: drawn from (seed, step), the same fused, alone or resumed
        self.register_buffer("noise_seed", torch.randint(2**31, ()))
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.long))
        width, feature, deep = dims.vision_width, dims.embed_dim, cfg.prompt_depth - 1
        bound = vpt_init_bound(dims)
        self.input_prompt = nn.Parameter(uniform(bound, cfg.prompt_tokens(), width))
        if deep and cfg.static_prompt:
            self.static = nn.Parameter(uniform(bound, deep, cfg.static_length, width))
        if deep and cfg.dynamic_prompt:
            shape = (deep, cfg.num_experts, cfg.prompt_length, width)
            self.experts = nn.Parameter(uniform(bound, *shape))
        if cfg.routed:
            router = KeyRouter if cfg.router == "keys" else LinearRouter
            sizes = (cfg.router_self_dim, cfg.router_cross_dim, cfg.num_experts)
            self.routers = nn.ModuleList(router(width, feature, *sizes) for _ in range(deep))
        if deep and cfg.mapped_prompt:
            self.mapper = Mapper(width, feature, cfg.mapper_width, cfg.mapped_length)

    def condition(self, cond: Conditioning) -> Tensor:
        """The complementary feature c (B, D): on a fusion dataset the paired text's frozen CLIP
        feature (as the paper); otherwise the image's own frozen CLIP feature."""
        if cond.paired_text_features is not None:
            return cond.paired_text_features
        assert cond.image_features is not None, "the engine fills image_features (needs_image)"
        return cond.image_features

    def class_text(self, template: str, classname: str) -> str:
        return template.format(classname)

    def plan(self, cond: Conditioning) -> PromptPlan:
        cfg, c = self.cfg, self.condition(cond)
        c = c.to(self.input_prompt.dtype)
        draws = self._generator()
        plan = PromptPlan()
        first = self._dropout(self.input_prompt.expand(len(c), -1, -1), draws)
        plan.vision[0] = Edit(add=first, carry=0)
        mapped = self._dropout(self.mapper(c), draws) if hasattr(self, "mapper") else None
        for layer in range(1, cfg.prompt_depth):
            plan.vision[layer] = Edit(
                add=self._layer_prompt(layer, c, mapped, plan, draws), carry=0
            )
        if cfg.dynamic_prompt and cfg.num_experts == 1 and cfg.prompt_depth > 1:
            plan.extras["routing"] = c.new_ones(cfg.prompt_depth - 1, len(c), 1)  # known now
        return plan

    def _layer_prompt(
        self,
        layer: int,
        c: Tensor,
        mapped: Tensor | None,
        plan: PromptPlan,
        draws: torch.Generator | None,
    ) -> Callable[[Tensor], Tensor]:
        """The prompts of `layer` as a function of its input tokens (the router reads them)."""
        cfg, i = self.cfg, layer - 1

        def prompts(tokens: Tensor) -> Tensor:
            parts = []
            if cfg.static_prompt:
                parts.append(self.static[i].expand(len(c), -1, -1))
            if cfg.dynamic_prompt:
                weights = self._route(i, tokens, c, draws)
                if cfg.routed:
                    record(plan, weights)
                parts.append(torch.einsum("bk,knd->bnd", weights, self.experts[i]))
            if mapped is not None:
                parts.append(mapped)
            return torch.cat(parts, dim=1)

        return prompts

    def _route(self, i: int, tokens: Tensor, c: Tensor, draws: torch.Generator | None) -> Tensor:
        """Routing weights (B, k) at conditioned layer i."""
        if not self.cfg.routed:
            return c.new_ones(len(c), 1)
        logits = self.routers[i](tokens.to(c.dtype), c) / self.cfg.router_temperature
        if draws is not None and self.cfg.router_noise > 0:
            logits = logits + self.cfg.router_noise * gaussian(logits, draws)
        return torch.softmax(logits, dim=-1)

    def _generator(self) -> torch.Generator | None:
        """This training step's generator for noise and dropout (None in evaluation): seeded by
        (seed, step), so fused, single and resumed seeds draw alike."""
        if not self.training:
            return None
        seed = int(self.noise_seed) * 1_000_003 + int(self.noise_step)
        return torch.Generator().manual_seed(seed)

    def _dropout(self, x: Tensor, draws: torch.Generator | None) -> Tensor:
        p = self.cfg.prompt_dropout
        if draws is None or p == 0:
            return x
        keep = torch.rand(x.shape, generator=draws) >= p
        return x * keep.to(x.device, x.dtype) / (1 - p)

    def prompt_tensors(self) -> dict[str, Tensor]:
        """The learned prompts and maps (the noise counters and BN's batch count left out)."""
        return {k: v for k, v in super().prompt_tensors().items() if v.dim() > 0}

    def aux_losses(self, plan: PromptPlan) -> dict[str, Tensor]:
        """The weighted importance loss. Taking a training step's losses ends the step: the
        next plan draws new noise and dropout (replanning within a step draws the same)."""
        if self.training:
            self.noise_step += 1
        if not self.cfg.routed or "routing" not in plan.extras or self.cfg.balance_weight == 0:
            return {}
        loss = importance_loss(plan.extras["routing"], self.cfg.balance_threshold)
        return {"balance": self.cfg.balance_weight * loss}

    def diagnostics(self, plan: PromptPlan) -> dict[str, float]:
        """Mean routing weight of each expert; the mean entropy of an image's routing (low: each
        image picks few experts) and of a layer's batch-mean routing (high: the images of a
        layer pick different experts; 0 when a layer sends every image to one expert)."""
        if "routing" not in plan.extras:
            return {}
        weights = plan.extras["routing"].detach().float()  # (layers, B, k)
        usage = weights.mean(dim=(0, 1))
        out = {f"expert_usage_{j}": value for j, value in enumerate(usage.tolist())}
        out["routing_entropy"] = routing_entropy(weights).item()
        out["usage_entropy"] = routing_entropy(weights.mean(dim=1)).item()
        return out
