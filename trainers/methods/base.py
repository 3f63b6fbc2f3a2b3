"""The one interface every prompt-learning method implements.

A method is a config dataclass (its knobs, paper defaults, validation) plus a `PromptMethod`
module that owns only its prompt parameters. Once per forward pass the engine
(`trainers.prompted_clip.PromptedCLIP`) asks the method for a `PromptPlan` and applies it layer by
layer to the frozen open_clip towers; the method never runs or edits the backbone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from trainers.backbone import Dims

EmbedWords = Callable[[str], Tensor]  # text -> frozen token embeddings (n_tokens, text_width)


def knob(default: Any, help: str, minimum: float | None = None) -> Any:
    """A method config field with its one-line help (`ablate methods` shows it) and, for a
    number, the least value it takes (checked by `MethodConfig.__post_init__`)."""
    metadata = {"help": help} | ({} if minimum is None else {"minimum": minimum})
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def knob_help(cfg_cls: type[MethodConfig], name: str) -> str:
    """The one-line help of a config field ("" when it has none)."""
    for f in dataclasses.fields(cfg_cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


PAPER_LAYERS = 12  # the papers' depth defaults count layers of ViT-B/16


@dataclass
class MethodConfig:
    """Knobs every method has. Subclasses add theirs; defaults are the paper's."""

    # fields that count prompted layers, with paper defaults for a 12-layer backbone
    depth_knobs: ClassVar[tuple[str, ...]] = ()

    prompt_length: int = knob(
        4, "learnable tokens per prompted layer (n_ctx in the papers)", minimum=0
    )
    init_text: str = knob("a photo of a", 'words that initialise the first prompts; "" = random')

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            least = f.metadata.get("minimum")
            if least is not None and getattr(self, f.name) < least:
                raise ValueError(f"method.{f.name} must be >= {least}, got {getattr(self, f.name)}")

    def check(self, dims: Dims) -> list[str]:
        """Errors for this config on a backbone with `dims` ("key: reason"); [] when it fits."""
        return []

    def for_backbone(self, dims: Dims) -> MethodConfig:
        """This config on a backbone with `dims`: a depth knob left at its paper default that
        exceeds a shallower backbone is scaled to it (MaPLe's 9 of 12 layers -> 3 of 4), so every
        method's default runs on every backbone. Any other value is kept (and `check`ed)."""
        layers = min(dims.text_layers, dims.vision_layers)
        defaults = type(self)()
        scaled = {
            key: max(1, round(getattr(self, key) * layers / PAPER_LAYERS))
            for key in self.depth_knobs
            if getattr(self, key) == getattr(defaults, key) and getattr(self, key) > layers
        }
        try:
            return dataclasses.replace(self, **scaled) if scaled else self
        except ValueError:  # the scaled value conflicts with another knob: `check` says so
            return self

    def inert_knobs(self) -> dict[str, str]:
        """Fields that change nothing under this config -> why (e.g. a router temperature with
        one expert). Every other field changes the logits or the trainable parameters (the
        conformance test checks both)."""
        return {}


@dataclass
class Edit:
    """What happens to one branch's prompt tokens at the input of one transformer layer.

    `carry` incoming prompt tokens flow on (the first ones; None = all of them), then `add` is
    appended. Deep prompting (VPT/MaPLe) replaces: ``Edit(add=t, carry=0)``.

    Shapes of `add`: text ``(k, d)`` shared, ``(S, k, d)`` one per text prompt set, or
    ``(S, C, k, d)`` per set and class; vision ``(k, d)`` shared or ``(B, k, d)`` per image.
    A vision `add` may also be a function of the layer's input sequence ``(B, L, d)`` that
    returns such a tensor (prompts conditioned on the hidden states, as MoPE's router).
    """

    add: Tensor | Callable[[Tensor], Tensor] | None = None
    carry: int | None = None


@dataclass
class PromptPlan:
    """Per branch, layer index -> Edit. Layers not listed keep their prompts as they flow in."""

    text: dict[int, Edit] = field(default_factory=dict)
    vision: dict[int, Edit] = field(default_factory=dict)
    text_sets: int = 1  # S: several text prompts per class (PMPO), pooled by `pool_text`
    extras: dict[str, Tensor] = field(default_factory=dict)  # e.g. routing weights for aux losses


@dataclass
class Conditioning:
    """What the engine already computed, frozen, for methods that condition on it."""

    batch_size: int
    image_features: Tensor | None = None  # (B, D) zero-shot image features, if `needs_image`
    class_features: Tensor | None = None  # (C, D) template text features, if `needs_class_features`
    paired_text_features: Tensor | None = None  # (B, D) fusion datasets: each image's paired text


class PromptMethod(nn.Module):
    """Owns the learnable prompt parameters and tells the engine what to put where.

    Subclasses set `Config`, implement `plan`, and may override `class_text`, `pool_text`,
    `aux_losses` and `diagnostics`. Every parameter of the module is trainable; the backbone is not.

    Args:
        cfg: the method's config (an instance of `Config`).
        dims: the backbone's widths and depths.
        embed_words: frozen token embeddings of a text, for initialising prompts from words.
    """

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    name: ClassVar[str] = ""
    needs_image: ClassVar[bool] = False  # engine fills Conditioning.image_features
    needs_class_features: ClassVar[bool] = False  # engine fills Conditioning.class_features
    # fusion datasets: conditioned on Conditioning.paired_text_features instead of the image
    uses_paired_text: ClassVar[bool] = False
    # bump when the method computes something else for the same config: the cells a study
    # recorded before are then retrained instead of mixed with the new ones (ablate's trial key)
    revision: ClassVar[int] = 1

    def __init__(self, cfg: MethodConfig, dims: Dims, embed_words: EmbedWords) -> None:
        super().__init__()
        self.cfg = cfg
        self.dims = dims

    def plan(self, cond: Conditioning) -> PromptPlan:
        """The prompt edits for one forward pass."""
        raise NotImplementedError

    def class_text(self, template: str, classname: str) -> str:
        """The frozen text that follows the layer-0 text prompts for one class."""
        tail = " ".join(self.cfg.init_text.split()[self.cfg.prompt_length :])
        return f"{tail} {classname}.".strip()

    def pool_text(self, features: Tensor, cond: Conditioning) -> Tensor:
        """(S, C, D) normalised features of the S prompt sets -> (C, D) class embeddings."""
        return nn.functional.normalize(features.mean(dim=0), dim=-1)

    def aux_losses(self, plan: PromptPlan) -> dict[str, Tensor]:
        """Extra loss terms (already weighted), e.g. MoPE's routing balance."""
        return {}

    def diagnostics(self, plan: PromptPlan) -> dict[str, float]:
        """Scalars worth logging per epoch, e.g. expert usage."""
        return {}

    def prompt_tensors(self) -> Mapping[str, Tensor]:
        """The learned state to save as an artifact (default: the state dict)."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items()}


def init_context(cfg: MethodConfig, width: int, embed_words: EmbedWords) -> Tensor:
    """`prompt_length` context vectors: the embeddings of the first words of `init_text`
    (CoOp/MaPLe initialisation), padded with N(0, 0.02) noise when the text is shorter."""
    n = cfg.prompt_length
    ctx = torch.randn(n, width) * 0.02
    words = cfg.init_text.split()[:n]
    if words:
        emb = embed_words(" ".join(words))[:n]
        ctx[: len(emb)] = emb
    return ctx
