"""MoPE's parts (see trainers/methods/mope.py for the method and its sources): the official key
router and the linear variant, the shared mapper, the importance loss, VPT's init and the noise."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.methods.base import PromptPlan

if TYPE_CHECKING:
    from trainers.backbone import Dims


class KeyRouter(nn.Module):
    """Official router of one layer: [P mean(x); Q c] against frozen orthonormal keys."""

    def __init__(self, width: int, feature: int, self_dim: int, cross_dim: int, experts: int):
        super().__init__()
        self.own = nn.Linear(width, self_dim)
        self.complement = nn.Linear(feature, cross_dim)
        keys = torch.empty(self_dim + cross_dim, experts)
        self.register_buffer("keys", nn.init.orthogonal_(keys))  # frozen, as the official

    def forward(self, tokens: Tensor, c: Tensor) -> Tensor:
        joint = torch.cat([self.own(tokens.mean(dim=1)), self.complement(c)], dim=-1)
        return joint @ self.keys.to(joint.dtype)


class LinearRouter(nn.Module):
    """Variant: a linear map of the complementary feature alone."""

    def __init__(self, width: int, feature: int, self_dim: int, cross_dim: int, experts: int):
        super().__init__()
        self.linear = nn.Linear(feature, experts)

    def forward(self, tokens: Tensor, c: Tensor) -> Tensor:
        return self.linear(c)


class Mapper(nn.Module):
    """The shared mapper: c -> GELU(BN(W_in c)) -> GELU(W_out .) as m tokens."""

    def __init__(self, width: int, feature: int, hidden: int, length: int) -> None:
        super().__init__()
        self.length = length
        self.inp = nn.Linear(feature, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, length * width)

    def train(self, mode: bool = True) -> Mapper:
        super().train(mode)
        self.norm.eval()  # the official train() leaves it in eval mode: fixed statistics
        return self

    def forward(self, c: Tensor) -> Tensor:
        hidden = F.gelu(self.norm(self.inp(c)))
        return F.gelu(self.out(hidden)).unflatten(-1, (self.length, -1))


def record(plan: PromptPlan, weights: Tensor) -> None:
    """Append one layer's routing weights (B, k) to plan.extras["routing"] (layers, B, k)."""
    old = plan.extras.get("routing")
    plan.extras["routing"] = weights[None] if old is None else torch.cat([old, weights[None]])


def importance_loss(routing: Tensor, threshold: float) -> Tensor:
    """Official importance loss; routing (J', B, k) -> scalar.

    Per layer CV^2 = (std / mean)^2 over experts (unbiased std) of the importance sum_b r_lbj,
    zeroed where it does not exceed `threshold`; mean over layers. 0 for uniform routing; k when
    every image goes to the same single expert.
    """
    importance = routing.float().sum(dim=1)  # (J', k)
    cv2 = (importance.std(dim=-1) / importance.mean(dim=-1)).square()
    return torch.where(cv2 > threshold, cv2, torch.zeros_like(cv2)).mean()


def routing_entropy(weights: Tensor) -> Tensor:
    """Mean entropy of the routing distributions (.., k)."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean()


def vpt_init_bound(dims: Dims, patch: int = 16) -> float:
    """VPT's uniform bound sqrt(6 / (3 patch^2 + d_v)) of the official _init_prompt (Dims has no
    patch size: ViT-B/16's)."""
    return math.sqrt(6.0 / (3 * patch**2 + dims.vision_width))


def uniform(bound: float, *shape: int) -> Tensor:
    return torch.empty(shape).uniform_(-bound, bound)


def gaussian(like: Tensor, draws: torch.Generator) -> Tensor:
    return torch.randn(like.shape, generator=draws).to(like.device, like.dtype)
