"""Readable learned prompts for the report, from the artifacts every seed run holds:
prompts.json (trainers.inspect.describe_prompts: shape, norms, nearest vocabulary tokens of each
text-width vector) and prompts.pt (the prompt tensors themselves)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MAX_VECTORS = 24  # rows of nearest tokens shown per tensor
MAX_TENSORS = 6
LAYER = re.compile(r"(?:^|\.)text_prompts\.(\d+)$")
LAYER_MAP = re.compile(r"(?:^|\.)couplings\.(\d+)\.\d+\.weight$")  # MPL: maps of a layer


def nearest_token_tables(described: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    """Per text-width tensor: (title, rows of [vector, norm, 'token (cos)' x k])."""
    out = []
    for name, entry in list(_with_tokens(described).items())[:MAX_TENSORS]:
        shape = entry.get("shape", [])
        rows = []
        for i, (tokens, norm) in enumerate(zip(entry["nearest_tokens"], entry.get("norms", []))):
            if i >= MAX_VECTORS:
                break
            cells = [f"{t['token']} ({t['cosine']:.2f})" for t in tokens]
            rows.append([_vector_label(i, shape), f"{norm:.3f}", *cells])
        out.append((f"{name} {list(shape)}", rows))
    return out


def _with_tokens(described: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in described.items() if isinstance(v, dict) and v.get("nearest_tokens")}


def _vector_label(index: int, shape: list[int]) -> str:
    """`prompt 1, ctx 3` for a (P, n, d) tensor, `ctx 3` for (n, d)."""
    if len(shape) == 3:
        per = shape[1]
        return f"prompt {index // per}, ctx {index % per}"
    return f"ctx {index}"


def prompt_similarity(path: Path) -> tuple[list[list[float]], list[str]] | None:
    """Pairwise cosine similarity of the P prompts of a multi-prompt method (a (P, n, d)
    tensor named *prompts, PMPO's): near 1 means the prompts collapsed into one."""
    import torch
    import torch.nn.functional as F

    tensors = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in tensors.items():
        if name.split(".")[-1] == "prompts" and tensor.dim() == 3 and len(tensor) >= 2:
            flat = F.normalize(tensor.float().flatten(1), dim=-1)
            matrix = (flat @ flat.T).tolist()
            return matrix, [f"p{i}" for i in range(len(tensor))]
    return None


def layer_prompt_counts(described: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(layer, text prompts, vision prompts added there) for MPL: each coupling map of a layer
    turns that layer's text prompts into as many vision prompts."""
    text, maps = {}, {}
    for name, entry in described.items():
        if (match := LAYER.search(name)) and entry.get("shape"):
            text[int(match.group(1))] = int(entry["shape"][0])
        elif match := LAYER_MAP.search(name):
            maps[int(match.group(1))] = maps.get(int(match.group(1)), 0) + 1
    return [(layer, n, n * maps.get(layer, 0)) for layer, n in sorted(text.items())]
