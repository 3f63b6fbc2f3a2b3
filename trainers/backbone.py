"""open_clip lives here and only here: load a CLIP by name + `pretrained`, freeze it, read its dims.

`pretrained` is an open_clip tag (e.g. "openai", downloaded by open_clip on machines with internet)
or a path to a local checkpoint. `ablate-tiny` is a small config shipped with the package
(`trainers/model_configs/`) for CPU runs and tests; with `pretrained=None` it has random weights.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import open_clip
import torch
from torch import nn

if TYPE_CHECKING:
    from trainers.configs import BackboneConfig

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)


@dataclass(frozen=True)
class Dims:
    """The widths and depths a method must read instead of hard-coding ViT-B/16's."""

    text_width: int
    vision_width: int
    text_layers: int
    vision_layers: int
    embed_dim: int
    context_length: int
    image_size: int


@dataclass
class Backbone:
    model: nn.Module  # an open_clip CLIP, frozen, in eval mode
    tokenizer: open_clip.tokenizer.SimpleTokenizer
    dims: Dims
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


class BackboneError(ValueError):
    """The backbone named in the config cannot be loaded (unknown model, bad checkpoint)."""


def dims_of(model_name: str) -> Dims:
    """Dims from the model's open_clip config, without building the model (cheap validation)."""
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise BackboneError(
            f"unknown open_clip model {model_name!r}; see open_clip.list_models() "
            f"(shipped here: {', '.join(p.stem for p in MODEL_CONFIG_DIR.glob('*.json'))})"
        )
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    image_size = vision["image_size"]
    return Dims(
        text_width=text["width"],
        vision_width=vision["width"],
        text_layers=text["layers"],
        vision_layers=vision["layers"],
        embed_dim=cfg["embed_dim"],
        context_length=text.get("context_length", 77),
        image_size=image_size if isinstance(image_size, int) else image_size[0],
    )


def check(cfg: BackboneConfig) -> Dims:
    """Validate name and checkpoint path before anything trains; return the dims."""
    dims = dims_of(cfg.model)
    if cfg.pretrained and _looks_like_path(cfg.pretrained) and not Path(cfg.pretrained).is_file():
        raise BackboneError(f"backbone.pretrained: checkpoint file {cfg.pretrained!r} not found")
    return dims


def load(cfg: BackboneConfig, device: str | torch.device = "cpu") -> Backbone:
    """Build the open_clip model, load its weights, and freeze every parameter."""
    dims = check(cfg)
    try:
        with _quiet_random_init(cfg.pretrained):
            model = open_clip.create_model(
                cfg.model, pretrained=cfg.pretrained or None, device=device
            )
    except Exception as err:  # open_clip raises RuntimeError/ValueError/OSError for bad weights
        raise BackboneError(
            f"backbone {cfg.model!r} with pretrained={cfg.pretrained!r} failed to load: {err}"
        ) from err
    model.eval().requires_grad_(False)
    visual = model.visual
    return Backbone(
        model=model,
        tokenizer=open_clip.get_tokenizer(cfg.model),
        dims=dims,
        image_mean=tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        image_std=tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
    )


@contextlib.contextmanager
def _quiet_random_init(pretrained: str | None) -> Iterator[None]:
    """open_clip warns on every random init; with pretrained=None that is what was asked for."""
    root = logging.getLogger()
    level = root.level
    if not pretrained:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _looks_like_path(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
