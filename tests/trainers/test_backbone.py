"""Every backbone is built with the activation its weights were trained with (QuickGELU for
OpenAI's), decided without downloading anything."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import open_clip
import pytest
import torch
import yaml
from torch import nn

import ablate
from trainers import backbone
from trainers.backbone import BackboneError, quick_gelu
from trainers.configs import BackboneConfig

PRESETS = sorted((Path(ablate.__file__).parent / "conf" / "backbone").glob("*.yaml"))
# What the weights were trained with, pinned by hand (not read from open_clip's table)
TRAINED_WITH = {
    ("ViT-B-16", "openai"): "QuickGELU",  # OpenAI's CLIP
    ("ViT-B-16", "laion2b_s34b_b88k"): "GELU",
    ("ViT-B-16", "dfn2b"): "QuickGELU",
    ("ablate-tiny-clip", "shipped"): "GELU",  # scripts/pretrain_tiny_clip.py: the config's GELU
}


def preset(path: Path) -> BackboneConfig:
    return BackboneConfig(**yaml.safe_load(path.read_text()))


def activations(cfg: BackboneConfig) -> set[str]:
    """The activation modules of the architecture `load` would build (meta tensors: no weights,
    no download)."""
    with torch.device("meta"):  # built on meta from the start: no memory, no random init
        model = backbone.build(cfg.model, quick_gelu(cfg), pretrained=None, device="meta")
    return activation_names(model)


def activation_names(model: nn.Module) -> set[str]:
    blocks = [
        m for m in model.modules() if isinstance(m, open_clip.transformer.ResidualAttentionBlock)
    ]
    assert blocks
    return {type(block.mlp.gelu).__name__ for block in blocks}


def cases() -> list[BackboneConfig]:
    """Every shipped preset, and every pretrained tag of the models they name."""
    configs = [preset(p) for p in PRESETS]
    tags = [
        BackboneConfig(model=cfg.model, pretrained=tag)
        for cfg in configs
        for tag in open_clip.list_pretrained_tags_by_model(cfg.model)
    ]
    return configs + tags


def trained_with(cfg: BackboneConfig) -> str:
    if (cfg.model, cfg.pretrained) in TRAINED_WITH:
        return TRAINED_WITH[cfg.model, cfg.pretrained]
    if cfg.pretrained in (None, "shipped"):
        return "GELU"  # random weights / ours: open_clip's config default for these models
    quick = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained).get("quick_gelu", False)
    return "QuickGELU" if quick else "GELU"


@pytest.mark.parametrize("cfg", cases(), ids=lambda c: f"{c.model}:{c.pretrained}:{c.quick_gelu}")
def test_every_preset_and_tag_builds_the_activation_of_its_weights(cfg):
    assert activations(cfg) == {trained_with(cfg)}


def test_the_presets_name_the_papers_backbone_with_quickgelu():
    presets = {p.stem: preset(p) for p in PRESETS}
    assert set(presets) >= {"tiny", "tiny_clip", "vit_b16"}
    assert (presets["vit_b16"].model, presets["vit_b16"].pretrained) == ("ViT-B-16", "openai")
    assert activations(presets["vit_b16"]) == {"QuickGELU"}
    # a local copy of OpenAI's weights keeps it (the preset says true)
    local = dataclasses.replace(presets["vit_b16"], pretrained="/weights/ViT-B-16.pt")
    assert quick_gelu(local) is True


def test_negative_control_open_clips_default_build_is_wrong_for_openai():
    """What `load` built before: open_clip's ViT-B-16 config has nn.GELU, OpenAI's weights not."""
    with torch.device("meta"):
        model = open_clip.create_model("ViT-B-16", pretrained=None, device="meta")
    assert activation_names(model) == {"GELU"} != {TRAINED_WITH["ViT-B-16", "openai"]}


def test_load_builds_the_decided_activation():
    shipped = backbone.load(BackboneConfig(model="ablate-tiny-clip", pretrained="shipped"))
    assert activation_names(shipped.model) == {"GELU"}
    random = backbone.load(BackboneConfig(model="ablate-tiny", quick_gelu="true"))
    assert activation_names(random.model) == {"QuickGELU"}  # random weights: as asked


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (BackboneConfig("ViT-B-16", "openai", quick_gelu="false"), "contradicts the 'openai'"),
        (BackboneConfig("ablate-tiny-clip", "shipped", quick_gelu="true"), "contradicts"),
        (BackboneConfig("ViT-B-16", "laion2b-s34b-b88k", quick_gelu="true"), "trained with nn"),
        (BackboneConfig("ViT-B-16", "laion2b"), "neither a checkpoint file nor a pretrained tag"),
    ],
)
def test_a_wrong_activation_or_tag_is_refused_before_anything_loads(cfg, match):
    with pytest.raises(BackboneError, match=match):
        backbone.check(cfg)


def test_a_checkpoint_path_takes_the_activation_its_model_s_weights_share(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({}, path)
    # RN50: every published weight used QuickGELU; ViT-B-16's differ, so it must be said
    assert quick_gelu(BackboneConfig("RN50", str(path))) is True
    with pytest.raises(BackboneError, match="backbone.quick_gelu: set it to true or false"):
        backbone.check(BackboneConfig("ViT-B-16", str(path)))
    for asked, built in (("true", True), ("false", False)):
        assert quick_gelu(BackboneConfig("ViT-B-16", str(path), quick_gelu=asked)) is built


def test_the_knob_reads_what_hydra_and_hand_written_configs_give():
    assert BackboneConfig(quick_gelu="True").quick_gelu == "true"  # Hydra's str of `true`
    assert BackboneConfig(quick_gelu=False).quick_gelu == "false"
    with pytest.raises(ValueError, match="backbone.quick_gelu"):
        BackboneConfig(quick_gelu="sometimes")


def test_random_weights_are_the_same_in_every_process_and_leave_its_random_state_alone():
    """A study on random weights (pretrained=None) trains every trial, worker and rerun on one
    backbone, whatever each process drew before (the same config and seed gave different
    losses in two runs of one study)."""
    cfg = BackboneConfig(model="ablate-tiny", pretrained=None)
    torch.manual_seed(123)
    first = backbone.load(cfg).model.state_dict()
    torch.manual_seed(456)
    torch.rand(7)  # whatever the process did before
    state = torch.get_rng_state()
    second = backbone.load(cfg).model.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
