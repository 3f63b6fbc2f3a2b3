"""open_clip lives here and only here: load a CLIP by name + `pretrained`, freeze it, read its dims.

`pretrained` is an open_clip tag (e.g. "openai", downloaded by open_clip on machines with internet)
or a path to a local checkpoint. `ablate-tiny` is a small config shipped with the package
(`trainers/model_configs/`) for CPU runs and tests; with `pretrained=None` it has random weights.
`pretrained="shipped"` names the weights packaged in `trainers/pretrained/` (`ablate-tiny-clip`,
pretrained offline by `scripts/pretrain_tiny_clip.py`), checked against their SHA-256 first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import zipfile
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

SHIPPED = "shipped"  # the `pretrained` value that selects the packaged weights below
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# model -> (file in PRETRAINED_DIR, its SHA-256); rebuild with scripts/pretrain_tiny_clip.py
SHIPPED_WEIGHTS: dict[str, tuple[str, str]] = {
    "ablate-tiny-clip": (
        "ablate-tiny-clip.safetensors",
        "a47d8e700a2b5a1a859d02006e5a66b4de2bcdebdaae1dd0c017a6905c9363bc",
    ),
}


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
    pretrained = resolve_pretrained(cfg)
    if pretrained and _looks_like_path(pretrained):
        _check_readable(Path(pretrained))
    return dims


def _check_readable(path: Path) -> None:
    """A cheap look at a local checkpoint (header only): exists, readable, a known format."""
    if not path.is_file():
        raise BackboneError(f"backbone.pretrained: checkpoint file '{path}' not found")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        raise BackboneError(f"backbone.pretrained: cannot read '{path}': {err}") from None
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:
            raise BackboneError(
                f"backbone.pretrained: '{path}' is not a readable safetensors file: {err}"
            ) from None
    elif not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise BackboneError(
            f"backbone.pretrained: '{path}' is not a PyTorch checkpoint (neither the zip "
            "archive torch.save writes nor a pickle) nor a .safetensors file"
        )


def resolve_pretrained(cfg: BackboneConfig) -> str | None:
    """What open_clip gets as `pretrained=`: "shipped" becomes the verified packaged file."""
    if cfg.pretrained != SHIPPED:
        return cfg.pretrained or None
    if cfg.model not in SHIPPED_WEIGHTS:
        raise BackboneError(
            f"backbone.pretrained: no shipped weights for model {cfg.model!r}; "
            f"shipped: {', '.join(sorted(SHIPPED_WEIGHTS))}"
        )
    filename, expected = SHIPPED_WEIGHTS[cfg.model]
    path = PRETRAINED_DIR / filename
    if not path.is_file():
        raise BackboneError(
            f"backbone.pretrained: shipped checkpoint {path} is missing; reinstall the package "
            "or rebuild it with scripts/pretrain_tiny_clip.py"
        )
    stat = path.stat()
    digest = _sha256(path, stat.st_size, stat.st_mtime_ns)
    if digest != expected:
        raise BackboneError(
            f"backbone.pretrained: shipped checkpoint {path} is corrupt: SHA-256 {digest} "
            f"!= expected {expected}; reinstall the package"
        )
    return str(path)


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Hash once per file version (size and mtime are part of the cache key)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(cfg: BackboneConfig, device: str | torch.device = "cpu") -> Backbone:
    """Build the open_clip model, load its weights, and freeze every parameter."""
    dims = check(cfg)
    pretrained = resolve_pretrained(cfg)
    try:
        with _quiet_random_init(pretrained):
            model = open_clip.create_model(cfg.model, pretrained=pretrained, device=device)
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
