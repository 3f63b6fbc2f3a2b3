"""PMPO: Multi-Prompt with Depth Partitioned Cross-Modal Learning (arXiv:2305.06221).

P learnable text prompts of n context vectors each. The vision encoder's prompted layers
0..depth-1 (the "bridge depth") are split into P contiguous ranges; inside its own range, prompt p
drives the vision prompts through one linear map (text width -> vision width) per layer, so one
vision forward carries the deep vision prompts of every partition. Each prompt gives class text
features (P text forwards per step, `PromptPlan.text_sets = P`); the class embedding is the mean
of the P normalised prompt embeddings and the frozen hand-written template's embedding.

Knobs -> paper: num_prompts = P, prompt_length = n, depth = bridge depth, partition = how the
depth is split ("even", or the first layer of each of the P ranges, e.g. [0, 4, 8]),
use_manual_prompt = the template's embedding joins the ensemble, init_text = the words that
initialise every prompt.
Trainable parameters: P*n*d_t + depth*(d_t*d_v + d_v) (4,736,000 on ViT-B/16 at the defaults).
Deviations: P and n are not pinned by our summary of the paper; we default to P=4 (its range is
1..8) and n=4 from "a photo of a". Prompts 1..P-1 start from the same words plus N(0, 0.02) noise
so they are not identical at step 0. Text prompts sit at the text encoder's input only.
With P=1, depth=1 and no manual prompt PMPO is MaPLe with prompt_depth=1 (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
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


@dataclass
class PMPOConfig(MethodConfig):
    depth_knobs: ClassVar[tuple[str, ...]] = ("depth",)
    prompt_length: int = knob(4, "context vectors of each text prompt (n)", minimum=1)
    init_text: str = knob("a photo of a", 'words that initialise every prompt; "" = random')
    num_prompts: int = knob(
        4, "text prompts P, each driving the vision prompts of its range", minimum=1
    )
    depth: int = knob(12, "bridge depth: vision layers 0..depth-1 get prompts", minimum=1)
    partition: Any = knob(
        "even", 'split of the depth: "even" or each range\'s first layer [0, 4, 8]'
    )
    use_manual_prompt: bool = knob(True, "the hand-written template joins the text ensemble")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_prompts > self.depth:
            raise ValueError(
                f"method.num_prompts ({self.num_prompts}) exceeds method.depth ({self.depth}): "
                "every prompt needs at least one layer"
            )
        if not isinstance(self.partition, str):
            try:
                self.partition = [int(b) for b in self.partition]
            except (TypeError, ValueError):
                raise ValueError(
                    f"method.partition must be 'even' or a list of layers, got {self.partition!r}"
                ) from None
        self.starts()  # raises on a bad partition

    def starts(self) -> list[int]:
        """The first layer of each prompt's range (P increasing values, the first 0)."""
        p, depth = self.num_prompts, self.depth
        if self.partition == "even":
            return [i * depth // p for i in range(p)]
        if isinstance(self.partition, str):
            raise ValueError(f"method.partition must be 'even' or a list, got {self.partition!r}")
        starts = list(self.partition)
        ok = (
            len(starts) == p
            and starts[:1] == [0]
            and all(a < b for a, b in zip(starts, starts[1:]))
        )
        if not ok or starts[-1] >= depth:
            raise ValueError(
                f"method.partition: expected {p} increasing first layers starting at 0 and below "
                f"method.depth={depth} (e.g. {[i * depth // p for i in range(p)]}), got {starts}"
            )
        return starts

    def inert_knobs(self) -> dict[str, str]:
        if self.num_prompts == 1:
            return {"partition": "one prompt owns every layer"}
        return {}

    def owners(self) -> list[int]:
        """For each prompted layer, the prompt whose range holds it."""
        bounds = [*self.starts(), self.depth]
        return [p for p in range(self.num_prompts) for _ in range(bounds[p], bounds[p + 1])]

    def check(self, dims: Dims) -> list[str]:
        if self.depth > dims.vision_layers:
            return [
                f"method.depth: {self.depth} exceeds the backbone's {dims.vision_layers} layers"
            ]
        return []


@register_method("pmpo")
class PMPO(PromptMethod):
    Config = PMPOConfig
    needs_class_features = True  # the manual prompt's features (unused if use_manual_prompt off)

    def __init__(self, cfg: PMPOConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__(cfg, dims, embed_words)
        first = init_context(cfg, dims.text_width, embed_words)
        noise = torch.randn(cfg.num_prompts - 1, *first.shape) * 0.02
        self.prompts = nn.Parameter(torch.cat([first[None], first + noise]))  # (P, n, d_t)
        self.couplings = nn.ModuleList(
            nn.Linear(dims.text_width, dims.vision_width) for _ in range(cfg.depth)
        )
        self.owners = cfg.owners()

    def plan(self, cond: Conditioning) -> PromptPlan:
        plan = PromptPlan(text={0: Edit(add=self.prompts, carry=0)}, text_sets=len(self.prompts))
        for layer, (owner, coupling) in enumerate(zip(self.owners, self.couplings)):
            plan.vision[layer] = Edit(add=coupling(self.prompts[owner]), carry=0)
        return plan

    def pool_text(self, features: Tensor, cond: Conditioning) -> Tensor:
        if self.cfg.use_manual_prompt:
            assert cond.class_features is not None, "the engine fills class_features"
            features = torch.cat([features, cond.class_features.to(features.dtype)[None]])
        return F.normalize(features.mean(dim=0), dim=-1)

    def diagnostics(self, plan: PromptPlan) -> dict[str, float]:
        """Pairwise cosine similarity of the P prompts: near 1 means they collapsed."""
        if len(self.prompts) < 2:
            return {}
        flat = F.normalize(self.prompts.detach().flatten(1), dim=-1)
        cos = flat @ flat.T
        pairs = cos[torch.triu_indices(len(cos), len(cos), offset=1).unbind()]
        return {"prompt_cos_mean": pairs.mean().item(), "prompt_cos_max": pairs.max().item()}
