"""The report's per-layer prompt table reads what MPL learned, in both of its designs."""

from __future__ import annotations

import torch

import trainers
from ablate.report import prompts
from trainers.engine import word_embedder
from trainers.inspect import describe_prompts


def counts(backbone, **knobs):
    cls = trainers.get_method("mpl")
    cfg = cls.Config(**knobs)
    method = cls(cfg, backbone.dims, word_embedder(backbone, torch.device("cpu")))
    return prompts.layer_prompt_counts(describe_prompts(method, backbone))


def test_mpl_official_design_adds_n_add_blocks_of_vision_prompts_per_deeper_layer(tiny_backbone):
    rows = counts(tiny_backbone, prompt_length=1, prompt_depth=2, n_add=3, n_remove=1)
    assert rows == [(0, 1, 1), (1, 1, 3)]


def test_mpl_both_branches_adds_as_many_vision_as_text_prompts(tiny_backbone):
    rows = counts(tiny_backbone, design="both_branches", prompt_length=2, prompt_depth=2)
    assert rows == [(0, 2, 2), (1, 2, 2)]
