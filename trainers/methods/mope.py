"""MoPE: Conditional Prompt Tuning for Multimodal Fusion (Jiang et al., arXiv:2312.03734).

Ruixiang Jiang, Lingbo Liu, Chang Wen Chen; follow-up "MoPE: Mixture of Prompt Experts for
Parameter-Efficient and Scalable Multimodal Fusion" (arXiv:2403.10568).

Conditioned vision prompts at layers 0..J-1, the concatenation of three kinds per layer:
a static prompt S_l (instance-independent), a dynamic prompt sum_j r_lj E_lj mixing k prompt
experts E_lj with routing weights r_l = softmax(W_l y / tau), and a mapped prompt M_l(y) from a
mapper (one linear map y -> m tokens) of the conditioning feature y. An importance loss keeps the
experts in use: balance_weight * mean over layers of CV^2 (squared coefficient of variation,
population variance) of the per-expert importance sum_b r_lbj over the batch.

Conditioning on CLIP image classification: y is the image's own frozen, normalised CLIP image
feature ([CLS] after ln_post and proj) from a prompt-free forward (`needs_image`; one extra
no-grad vision forward per step). The text branch stays the frozen hand-written template (the
paper prompts only the main modality). On the paper's image+text fusion datasets
(trainers.fusion) y is the paired text's frozen CLIP feature, the complementary modality.

Knobs -> paper: num_experts = k, router_temperature = tau, static_prompt / dynamic_prompt /
mapped_prompt = which kinds are on, static_length / prompt_length (each expert) /
mapped_length = the prompt lengths, balance_weight = the importance loss weight, prompt_depth = J.
Trainable parameters (D = embed dim, [x] = 1 when kind x is on):
J * ([static] s*d_v + [dynamic] (k*n*d_v + D*k + k) + [mapped] (D*m*d_v + m*d_v))
(4,936,752 on ViT-B/16 at the defaults).
Deviations / our choices: dense routing (every expert weighted, no top-k, no routing noise);
per-layer experts, routers and mappers; lengths s=4, n=4, m=1, k=4, tau=1, balance 0.01, J = all
12 layers are our defaults where our summary of the paper gives none.
"""

from __future__ import annotations

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
)
from trainers.registry import register_method

if TYPE_CHECKING:
    from trainers.backbone import Dims


@dataclass
class MoPEConfig(MethodConfig):
    prompt_length: int = 4  # n: tokens of each prompt expert (the dynamic prompt)
    init_text: str = ""  # unused: the text branch is the hand-written template
    num_experts: int = 4  # k
    router_temperature: float = 1.0  # tau
    static_prompt: bool = True
    dynamic_prompt: bool = True
    mapped_prompt: bool = True
    static_length: int = 4  # s
    mapped_length: int = 1  # m
    balance_weight: float = 0.01  # importance-loss weight
    prompt_depth: int = 12  # J: vision layers 0..J-1 get prompts

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("num_experts", "prompt_depth"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.router_temperature <= 0:
            raise ValueError(
                f"method.router_temperature must be > 0, got {self.router_temperature}"
            )
        if self.balance_weight < 0:
            raise ValueError(f"method.balance_weight must be >= 0, got {self.balance_weight}")
        kinds = {"static": "static_length", "dynamic": "prompt_length", "mapped": "mapped_length"}
        if not any(getattr(self, f"{kind}_prompt") for kind in kinds):
            raise ValueError("method.static_prompt/dynamic_prompt/mapped_prompt: turn one on")
        for kind, length in kinds.items():
            if getattr(self, f"{kind}_prompt") and getattr(self, length) < 1:
                raise ValueError(f"method.{length} must be >= 1 while method.{kind}_prompt is on")

    def check(self, dims: Dims) -> list[str]:
        if self.prompt_depth > dims.vision_layers:
            return [
                f"method.prompt_depth: {self.prompt_depth} exceeds the backbone's "
                f"{dims.vision_layers} vision layers"
            ]
        return []


@register_method("mope")
class MoPE(PromptMethod):
    Config = MoPEConfig
    needs_image = True
    uses_paired_text = True  # fusion datasets: conditioned on the text, no image feature needed

    def __init__(self, cfg: MoPEConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        depth, width, feature = cfg.prompt_depth, dims.vision_width, dims.embed_dim
        if cfg.static_prompt:
            self.static = nn.Parameter(torch.randn(depth, cfg.static_length, width) * 0.02)
        if cfg.dynamic_prompt:
            shape = (depth, cfg.num_experts, cfg.prompt_length, width)
            self.experts = nn.Parameter(torch.randn(shape) * 0.02)
            self.routers = nn.ModuleList(nn.Linear(feature, cfg.num_experts) for _ in range(depth))
        if cfg.mapped_prompt:
            out = cfg.mapped_length * width
            self.mappers = nn.ModuleList(nn.Linear(feature, out) for _ in range(depth))

    def condition(self, cond: Conditioning) -> Tensor:
        """The conditioning feature y (B, D): on a fusion dataset the paired text's frozen CLIP
        feature (the complementary modality, as the paper); otherwise the image's own."""
        if cond.paired_text_features is not None:
            return cond.paired_text_features
        assert cond.image_features is not None, "the engine fills image_features (needs_image)"
        return cond.image_features

    def class_text(self, template: str, classname: str) -> str:
        return template.format(classname)

    def plan(self, cond: Conditioning) -> PromptPlan:
        cfg, y = self.cfg, self.condition(cond)
        y = y.to(next(self.parameters()).dtype)
        plan, routing = PromptPlan(), []
        for layer in range(cfg.prompt_depth):
            parts = []
            if cfg.static_prompt:
                parts.append(self.static[layer].expand(len(y), -1, -1))
            if cfg.dynamic_prompt:
                weights = torch.softmax(self.routers[layer](y) / cfg.router_temperature, dim=-1)
                parts.append(torch.einsum("bk,knd->bnd", weights, self.experts[layer]))
                routing.append(weights)
            if cfg.mapped_prompt:
                parts.append(self.mappers[layer](y).unflatten(-1, (cfg.mapped_length, -1)))
            plan.vision[layer] = Edit(add=torch.cat(parts, dim=1), carry=0)
        if routing:
            plan.extras["routing"] = torch.stack(routing)  # (J, B, k)
        return plan

    def aux_losses(self, plan: PromptPlan) -> dict[str, Tensor]:
        if "routing" not in plan.extras or self.cfg.balance_weight == 0:
            return {}
        return {"balance": self.cfg.balance_weight * balance_loss(plan.extras["routing"])}

    def diagnostics(self, plan: PromptPlan) -> dict[str, float]:
        """Mean routing weight of each expert, and the mean routing entropy (at most log k)."""
        if "routing" not in plan.extras:
            return {}
        weights = plan.extras["routing"].detach().float()
        usage = weights.mean(dim=(0, 1))
        out = {f"expert_usage_{j}": value for j, value in enumerate(usage.tolist())}
        entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean()
        out["routing_entropy"] = entropy.item()
        return out


def balance_loss(routing: Tensor) -> Tensor:
    """Mean over layers of CV^2 of per-expert importance; routing (J, B, k) -> scalar.

    0 for uniform routing; largest, k - 1, when every image goes to the same single expert.
    """
    importance = routing.float().sum(dim=1)  # (J, k)
    mean = importance.mean(dim=-1)
    variance = importance.var(dim=-1, correction=0)
    return (variance / (mean.square() + 1e-10)).mean()
