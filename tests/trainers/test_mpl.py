"""MPL: the official design against an independent re-reading of the authors' forward, its
parameter count, its prompt counts per layer, and the both_branches schedule variant."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import trainers
from tests.trainers.reference import mpl as reference
from tests.trainers.test_methods import CLASSES, build, images, paper_param_count
from trainers.backbone import dims_of
from trainers.methods.maple import MaPLeConfig
from trainers.methods.mpl import MPL, MPLConfig

BOTH = "both_branches"


def official_params(method: MPL) -> dict[str, torch.Tensor]:
    """The method's parameters under the official code's names (see reference/mpl.py)."""
    text, maps = method.text_prompts, method.couplings
    out = {"ctx": text["0"], "proj.weight": maps["0"][0].weight, "proj.bias": maps["0"][0].bias}
    for layer in range(1, len(method.ops)):
        out[f"compound_prompts_text.{layer - 1}"] = text[str(layer)]
        for i, m in enumerate(maps[str(layer)]):
            out[f"txt2img_proj.{i}.{layer - 1}.weight"] = m.weight
            out[f"txt2img_proj.{i}.{layer - 1}.bias"] = m.bias
    return {k: v.detach().clone() for k, v in out.items()}


def perturbed(backbone, cfg: MPLConfig):
    """A model whose every parameter is moved off its initialisation (the cloned deeper maps
    start equal, which would hide a mix-up of their order)."""
    model = build(backbone, cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.method.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def reference_logits(backbone, cfg: MPLConfig, params, x: torch.Tensor) -> torch.Tensor:
    return reference.logits(
        backbone.model,
        backbone.tokenizer,
        x,
        CLASSES,
        params,
        depth=cfg.prompt_depth,
        n_add=cfg.n_add,
        n_rm=cfg.n_remove,
        ctx_init=cfg.init_text,
    )


OFFICIAL_SHAPES = [
    {"prompt_depth": 4},  # vit_b4_c1_add2_rm1 on 4 layers: n=1, add 2, remove 1
    {"prompt_length": 2, "n_add": 3, "n_remove": 2, "prompt_depth": 3},
    {"prompt_length": 2, "n_add": 1, "n_remove": 0, "prompt_depth": 4, "init_text": "a photo"},
]


@pytest.mark.parametrize("shape", OFFICIAL_SHAPES)
def test_official_design_matches_the_reference_forward(tiny_clip, shape):
    cfg = MPLConfig(**shape)
    model = perturbed(tiny_clip, cfg)
    x = images(tiny_clip)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    expected = reference_logits(tiny_clip, cfg, official_params(model.method), x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_the_reference_comparison_can_fail(tiny_clip):
    """Negative controls: one parameter nudged, or the two maps of layer 1 swapped (so the
    other new prompt is the one layer 2 removes), moves the logits far beyond 1e-5."""
    cfg = MPLConfig(prompt_depth=4)
    model = perturbed(tiny_clip, cfg)
    x = images(tiny_clip)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    params = official_params(model.method)
    bias = params["txt2img_proj.1.2.bias"]  # the newest prompt of the last layer
    nudged = dict(
        params,
        **{
            "txt2img_proj.1.2.bias": bias
            + 0.05 * torch.randn(bias.shape, generator=torch.Generator().manual_seed(0))
        },
    )
    swapped = dict(params)
    for end in ("weight", "bias"):
        swapped[f"txt2img_proj.0.0.{end}"] = params[f"txt2img_proj.1.0.{end}"]
        swapped[f"txt2img_proj.1.0.{end}"] = params[f"txt2img_proj.0.0.{end}"]
    for wrong in (nudged, swapped):
        assert (ours - reference_logits(tiny_clip, cfg, wrong, x)).abs().max() > 1e-3


def test_official_default_has_the_official_parameter_count_on_vit_b16():
    dims = dims_of("ViT-B-16")
    method = MPL(MPLConfig(), dims, lambda text: torch.zeros(len(text.split()), dims.text_width))
    count = sum(p.numel() for p in method.parameters() if p.requires_grad)
    assert count == 6_702_336 == paper_param_count("mpl", method.cfg, dims)
    variant = MPL(MPLConfig(design=BOTH, prompt_length=2), dims, lambda t: torch.zeros(2, 512))
    assert sum(p.numel() for p in variant.parameters()) == 3_555_072  # as MaPLe


def test_official_initialisation(tiny_clip):
    """Layer 0 starts as the embedding of "X", every deeper map as a copy of one linear map,
    and each class reads "X a photo of a {class}." with the whole CTX_INIT kept as text."""
    model = build(tiny_clip, MPLConfig(prompt_length=2, prompt_depth=3))
    method = model.method
    x_word = tiny_clip.model.token_embedding(tiny_clip.tokenizer(["X"])[0, 1:2])
    torch.testing.assert_close(method.text_prompts["0"], x_word.expand(2, -1))
    deeper = [m.weight for layer in ("1", "2") for m in method.couplings[layer]]
    assert len(deeper) == 4 and all(torch.equal(w, deeper[0]) for w in deeper)
    assert not torch.equal(method.couplings["0"][0].weight, deeper[0])
    assert method.class_text("{}", "zero") == "a photo of a zero."


def sequence_lengths(backbone, model) -> dict[str, list[int]]:
    """Tokens entering each block of both towers during one forward."""
    seen: dict[str, list[int]] = {"text": [], "vision": []}
    hooks = []
    for branch, blocks in (
        ("text", backbone.model.transformer.resblocks),
        ("vision", backbone.model.visual.transformer.resblocks),
    ):
        for block in blocks:
            hook = block.register_forward_pre_hook(
                lambda _, args, b=branch: seen[b].append(args[0].shape[1])
            )
            hooks.append(hook)
    try:
        with torch.no_grad():
            model(images(backbone, 2), CLASSES)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_official_vision_prompts_grow_and_text_prompts_are_replaced(tiny_backbone):
    """add 2, remove 1 from n = 1: 1, 2 vision prompts on the two layers; text stays n."""
    cfg = MPLConfig(prompt_depth=2)
    assert cfg.vision_counts() == [1, 2] and cfg.text_counts() == [1, 1]
    seen = sequence_lengths(tiny_backbone, build(tiny_backbone, cfg))
    patches = (tiny_backbone.dims.image_size // 8) ** 2 + 1
    assert seen["vision"] == [patches + 1, patches + 2]
    assert seen["text"][0] == seen["text"][1]
    assert MPLConfig(prompt_depth=9).vision_counts() == list(range(1, 10))
    assert MPLConfig(prompt_length=2, n_add=1, n_remove=2).vision_counts() == [2] * 9


def test_official_remove_all_add_one_map_is_maple_exactly(tiny_backbone):
    """n = 2, one map per layer, remove 2: MaPLe (b = 2) given the same parameters, with the
    text after the prompts set to MaPLe's ("of a")."""
    maple = build(tiny_backbone, MaPLeConfig(prompt_length=2, prompt_depth=2), seed=1)
    cfg = MPLConfig(prompt_length=2, prompt_depth=2, n_add=1, n_remove=2, init_text="of a")
    mpl = build(tiny_backbone, cfg, seed=2)
    copy_maple(maple, mpl)
    x = images(tiny_backbone)
    with torch.no_grad():
        assert torch.equal(mpl(x, CLASSES)[0], maple(x, CLASSES)[0])


def copy_maple(maple, mpl) -> None:
    with torch.no_grad():
        for layer, coupling in enumerate(maple.method.couplings):
            mpl.method.text_prompts[str(layer)].copy_(maple.method.text_prompts[layer])
            mpl.method.couplings[str(layer)][0].load_state_dict(coupling.state_dict())


def test_the_replace_all_schedule_is_maple_exactly(tiny_backbone):
    maple = build(tiny_backbone, MaPLeConfig(prompt_length=2, prompt_depth=2), seed=1)
    for cfg in (
        MPLConfig(design=BOTH, prompt_length=2, prompt_depth=2, preset="maple"),
        MPLConfig(design=BOTH, preset="custom", schedule=[[2, 0], [2, 0]]),
    ):
        mpl = build(tiny_backbone, cfg, seed=2)
        copy_maple(maple, mpl)
        x = images(tiny_backbone)
        with torch.no_grad():
            assert torch.equal(mpl(x, CLASSES)[0], maple(x, CLASSES)[0])


@pytest.mark.parametrize(
    ("preset", "counts"),
    [("maple", [2, 2, 2, 2]), ("keep_first", [2, 4, 4, 4]), ("accumulate", [2, 4, 6, 8])],
)
def test_presets_give_their_prompt_counts(preset, counts):
    cfg = MPLConfig(design=BOTH, prompt_length=2, prompt_depth=4, preset=preset)
    assert cfg.counts() == counts == cfg.text_counts()


def test_the_engine_inserts_the_scheduled_number_of_prompts(tiny_backbone):
    """Sequence lengths entering each block: base tokens + prompts present at that layer."""
    cfg = MPLConfig(design=BOTH, preset="custom", schedule=[[3, 0], [2, 3]], init_text="")
    seen = sequence_lengths(tiny_backbone, build(tiny_backbone, cfg))
    patches = (tiny_backbone.dims.image_size // 8) ** 2 + 1
    assert seen["vision"] == [patches + 3, patches + 5]
    assert seen["text"][1] - seen["text"][0] == 2  # 3 present, then carry 3 + add 2


def test_carrying_changes_what_the_next_layer_sees(tiny_backbone):
    """Same parameters, carry 2 vs carry 0 at layer 1: the carried prompts change the logits."""
    carry = build(tiny_backbone, MPLConfig(design=BOTH, preset="custom", schedule=[[2, 0], [1, 2]]))
    drop = build(tiny_backbone, MPLConfig(design=BOTH, preset="custom", schedule=[[2, 0], [1, 0]]))
    drop.method.load_state_dict(carry.method.state_dict())
    x = images(tiny_backbone, 2)
    with torch.no_grad():
        assert not torch.allclose(carry(x, CLASSES)[0], drop(x, CLASSES)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "custom", "schedule": [[2, 0], [1, 3]]}, r"schedule\[1\]: cannot carry 3"),
        ({"preset": "custom", "schedule": [[2, 1]]}, r"schedule\[0\]: cannot carry 1"),
        ({"preset": "custom", "schedule": [[2, 0], [1]]}, r"schedule\[1\]: expected \[add, carry"),
        ({"preset": "custom", "schedule": [[2, -1]]}, r"schedule\[0\]: expected"),
        ({"design": BOTH, "preset": "custom"}, r"method.preset=custom needs method.schedule"),
        ({"preset": "replace"}, r"method.preset 'replace' is not one of"),
        ({"prompt_depth": 0}, r"method.prompt_depth must be >= 1"),
        ({"design": "vision_only"}, r"method.design 'vision_only' is not one of"),
        ({"n_remove": 2}, r"method.n_remove: layer 1 cannot remove 2 vision prompts, only 1"),
        ({"prompt_length": 2, "n_add": 0, "n_remove": 1}, r"n_remove: layer 3 cannot remove 1"),
        ({"n_add": -1}, r"method.n_add must be >= 0"),
        ({"prompt_length": 0}, r"method.prompt_length must be >= 1 with method.design=official"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPLConfig(**kwargs)


def test_config_must_fit_the_backbone(tiny_backbone):
    dims = tiny_backbone.dims
    assert "method.prompt_depth: 3 layers exceed" in MPLConfig(prompt_depth=3).check(dims)[0]
    long = MPLConfig(design=BOTH, preset="custom", schedule=[[2, 0], [2, 2], [2, 4]])
    assert "method.schedule: 3 layers exceed" in long.check(dims)[0]
    wide = MPLConfig(design=BOTH, preset="custom", schedule=[[10, 0], [10, 10]])
    assert "text context" in wide.check(dims)[0]
    assert "text context" in MPLConfig(prompt_length=17, prompt_depth=2).check(dims)[0]


def test_layers_that_only_carry_have_no_parameters(tiny_backbone):
    cfg = MPLConfig(design=BOTH, preset="custom", schedule=[[2, 0], [0, 1]])
    model = build(tiny_backbone, cfg)
    names = {name.split(".")[1] for name, _ in model.method.named_parameters()}
    assert names == {"0"}
    count = sum(p.numel() for p in model.method.parameters())
    assert count == paper_param_count("mpl", cfg, tiny_backbone.dims)
    assert model.method.class_text("{}", "zero") == "of a zero."


def test_designs_declare_the_knobs_they_do_not_read():
    official, both = MPLConfig(), MPLConfig(design=BOTH)
    assert set(official.inert_knobs()) == {"preset", "schedule"}
    assert set(both.inert_knobs()) == {"n_add", "n_remove", "placeholder", "schedule"}
    fields = {f.name for f in dataclasses.fields(MPLConfig)}
    assert fields >= {"design", "n_add", "n_remove", "prompt_length", "prompt_depth"}
    assert trainers.get_method("mpl") is MPL
