"""Readable views of learned prompts: nearest vocabulary tokens and norms of context vectors.

CoOp's interpretation trick: a learned text context vector is shown as the vocabulary tokens whose
(frozen) token embeddings are closest to it by cosine similarity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trainers.backbone import Backbone
from trainers.methods.base import PromptMethod


def describe_prompts(method: PromptMethod, backbone: Backbone, k: int = 5) -> dict[str, Any]:
    """For every text-width prompt tensor: per vector, its norm and the k nearest tokens."""
    vocab = _unit_vocabulary(backbone)
    width = backbone.dims.text_width
    out: dict[str, Any] = {}
    for name, tensor in method.prompt_tensors().items():
        vectors = tensor.float().reshape(-1, tensor.shape[-1])
        entry: dict[str, Any] = {"shape": list(tensor.shape), "norms": _round(vectors.norm(dim=-1))}
        if tensor.shape[-1] == width and tensor.dim() >= 2:
            similarity = F.normalize(vectors, dim=-1) @ vocab.T.to(vectors.device)
            scores, ids = similarity.topk(k, dim=-1)
            entry["nearest_tokens"] = [
                [
                    {"token": _token(backbone, int(i)), "cosine": round(float(s), 4)}
                    for s, i in zip(row_s, row_i)
                ]
                for row_s, row_i in zip(scores, ids)
            ]
        out[name] = entry
    return out


_VOCABULARY: list[tuple[torch.Tensor, torch.Tensor]] = []  # (weight, unit rows): the last one


def _unit_vocabulary(backbone: Backbone) -> torch.Tensor:
    """The frozen token embeddings as unit vectors, computed once per backbone (every epoch of
    every seed describes its prompts against them)."""
    weight = backbone.model.token_embedding.weight
    if not _VOCABULARY or _VOCABULARY[0][0] is not weight:
        _VOCABULARY[:] = [(weight, F.normalize(weight.detach().float(), dim=-1))]
    return _VOCABULARY[0][1]


def _token(backbone: Backbone, token_id: int) -> str:
    decoder = getattr(backbone.tokenizer, "decoder", None)
    if decoder is None:
        return str(token_id)
    return decoder.get(token_id, str(token_id)).replace("</w>", "")


def _round(values: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in values]
