"""A second tiny backbone whose widths and depths all differ, so no method can mix them up."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from trainers.backbone import Backbone, load
from trainers.configs import BackboneConfig

UNEVEN = {
    "embed_dim": 48,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 96, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def uneven_backbone(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    """d_t=64, d_v=96, D=48, 2 text and 3 vision layers; random weights."""
    path = tmp_path_factory.mktemp("model_configs") / "ablate-test-uneven.json"
    path.write_text(json.dumps(UNEVEN))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    return load(BackboneConfig(model="ablate-test-uneven", pretrained=None))


@pytest.fixture(scope="session")
def tiny_clip() -> Backbone:
    """The shipped pretrained tiny CLIP (4 layers): where methods are compared with their
    authors' forwards."""
    return load(BackboneConfig(model="ablate-tiny-clip", pretrained="shipped"))
