"""open_clip lives here and only here: load a CLIP by name + `pretrained`, freeze it, read its dims.

`pretrained` is an open_clip tag (e.g. "openai", downloaded by open_clip on machines with internet)
or a path to a local checkpoint. `ablate-tiny` is a small config shipped with the package
(`trainers/model_configs/`) for CPU runs and tests; with `pretrained=None` it has random weights.
`pretrained="shipped"` names the weights packaged in `trainers/pretrained/` (`ablate-tiny-clip`,
pretrained offline by `scripts/pretrain_tiny_clip.py`), checked against their SHA-256 first.

The activation is part of the weights: OpenAI's CLIPs were trained with QuickGELU, while open_clip
builds `ViT-B-16` with nn.GELU unless told otherwise (for a tag it only warns). `quick_gelu`
decides it from `backbone.quick_gelu` and what the weights were trained with, and `build` builds
the architecture with that activation.
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
RANDOM_INIT_SEED = 0  # random weights (pretrained=None) are the same in every process
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
    """Validate name, checkpoint path and activation before anything trains; return the dims."""
    dims = dims_of(cfg.model)
    pretrained = resolve_pretrained(cfg)
    if pretrained and _looks_like_path(pretrained):
        _check_readable(Path(pretrained))
    elif pretrained:
        _check_tag(cfg.model, pretrained)
    quick_gelu(cfg)
    return dims


def _check_tag(model_name: str, pretrained: str) -> None:
    """A `pretrained` that does not look like a path is a tag of the model or a file here."""
    if open_clip.is_pretrained_cfg(model_name, pretrained) or Path(pretrained).is_file():
        return
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
    raise BackboneError(
        f"backbone.pretrained: {pretrained!r} is neither a checkpoint file nor a pretrained tag "
        f"of {model_name} (tags: {tags})"
    )


def quick_gelu(cfg: BackboneConfig) -> bool:
    """Whether to build `cfg.model` with QuickGELU: the activation its weights were trained with.

    A pretrained tag answers from open_clip's pretrained table; the shipped weights and random
    weights from the model config (what `scripts/pretrain_tiny_clip.py` built). For a checkpoint
    path `backbone.quick_gelu` decides; `auto` then takes the activation of the model's published
    weights when they all agree (RN50: QuickGELU) and refuses when they differ (ViT-B-16:
    OpenAI's QuickGELU, LAION's GELU).

    Raises:
        BackboneError: `backbone.quick_gelu` contradicts the tag's weights, or a path is ambiguous.
    """
    asked = None if cfg.quick_gelu == "auto" else cfg.quick_gelu == "true"
    if not cfg.pretrained:  # random weights: nothing to match
        return _config_quick_gelu(cfg.model) if asked is None else asked
    if cfg.pretrained == SHIPPED or open_clip.is_pretrained_cfg(cfg.model, cfg.pretrained):
        trained = _weights_quick_gelu(cfg)
        if asked is not None and asked != trained:
            raise BackboneError(
                f"backbone.quick_gelu={cfg.quick_gelu} contradicts the {cfg.pretrained!r} weights "
                f"of {cfg.model}, trained with {_activation(trained)}; set backbone.quick_gelu=auto"
            )
        return trained
    return asked if asked is not None else _published_quick_gelu(cfg)


def _weights_quick_gelu(cfg: BackboneConfig) -> bool:
    """The activation the shipped weights or a pretrained tag's weights were trained with."""
    if cfg.pretrained == SHIPPED:  # pretrained from the model config as it is
        return _config_quick_gelu(cfg.model)
    return _tag_quick_gelu(cfg.model, str(cfg.pretrained))


def _published_quick_gelu(cfg: BackboneConfig) -> bool:
    """For a checkpoint path: the activation every published weight of the model shares."""
    tags = {
        t: _tag_quick_gelu(cfg.model, t) for t in open_clip.list_pretrained_tags_by_model(cfg.model)
    }
    if len(set(tags.values())) <= 1:
        return next(iter(tags.values()), _config_quick_gelu(cfg.model))
    listed = "; ".join(
        f"{_activation(q)}: {', '.join(t for t, v in tags.items() if v == q)}"
        for q in (True, False)
    )
    raise BackboneError(
        f"backbone.quick_gelu: set it to true or false for checkpoint '{cfg.pretrained}' "
        f"(true for OpenAI's weights): {cfg.model}'s published weights differ ({listed})"
    )


def _tag_quick_gelu(model_name: str, tag: str) -> bool:
    return bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))


def _config_quick_gelu(model_name: str) -> bool:
    return bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))


def _activation(quick: bool) -> str:
    return "QuickGELU" if quick else "nn.GELU"


def build(
    model_name: str,
    quick_gelu: bool,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """open_clip's model with the activation given here, whatever its config says."""
    # force_quick_gelu sets the config (so open_clip's tag check agrees); the keyword also
    # turns a -quickgelu config back to nn.GELU when asked
    return open_clip.create_model(
        model_name,
        pretrained=pretrained,
        device=device,
        force_quick_gelu=quick_gelu,
        quick_gelu=quick_gelu,
    )


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
            model = build(cfg.model, quick_gelu(cfg), pretrained, device)
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
    """open_clip warns on every random init; with pretrained=None that is what was asked for.

    Random weights are drawn from a fixed seed (on the CPU, where open_clip builds the model),
    whatever the process's random state: every trial, worker and run of a study then trains its
    prompts on the same backbone. The caller's random state is left as it was."""
    if pretrained:
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            yield
    finally:
        root.setLevel(level)


def _looks_like_path(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
