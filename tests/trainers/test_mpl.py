"""MPL: schedule validation, prompt counts per layer, and MaPLe as the replace-all schedule."""

from __future__ import annotations

import pytest
import torch

from tests.trainers.test_methods import CLASSES, build, images, paper_param_count
from trainers.methods.maple import MaPLeConfig
from trainers.methods.mpl import MPLConfig


def test_the_replace_all_schedule_is_maple_exactly(tiny_backbone):
    maple = build(tiny_backbone, MaPLeConfig(prompt_length=2, prompt_depth=2), seed=1)
    for cfg in (
        MPLConfig(prompt_length=2, prompt_depth=2, preset="maple"),
        MPLConfig(preset="custom", schedule=[[2, 0], [2, 0]]),
    ):
        mpl = build(tiny_backbone, cfg, seed=2)
        with torch.no_grad():
            for layer in range(2):
                mpl.method.text_prompts[str(layer)].copy_(maple.method.text_prompts[layer])
            for layer, coupling in enumerate(maple.method.couplings):
                mpl.method.couplings[str(layer)].load_state_dict(coupling.state_dict())
            x = images(tiny_backbone)
            assert torch.equal(mpl(x, CLASSES)[0], maple(x, CLASSES)[0])


@pytest.mark.parametrize(
    ("preset", "counts"),
    [("maple", [2, 2, 2, 2]), ("keep_first", [2, 4, 4, 4]), ("accumulate", [2, 4, 6, 8])],
)
def test_presets_give_their_prompt_counts(preset, counts):
    assert MPLConfig(prompt_length=2, prompt_depth=4, preset=preset).counts() == counts


def test_the_engine_inserts_the_scheduled_number_of_prompts(tiny_backbone):
    """Sequence lengths entering each block: base tokens + prompts present at that layer."""
    cfg = MPLConfig(preset="custom", schedule=[[3, 0], [2, 3]], init_text="")
    model = build(tiny_backbone, cfg)
    seen: dict[str, list[int]] = {"text": [], "vision": []}
    hooks = []
    for branch, blocks in (
        ("text", tiny_backbone.model.transformer.resblocks),
        ("vision", tiny_backbone.model.visual.transformer.resblocks),
    ):
        for block in blocks:
            hook = block.register_forward_pre_hook(
                lambda _, args, b=branch: seen[b].append(args[0].shape[1])
            )
            hooks.append(hook)
    try:
        with torch.no_grad():
            model(images(tiny_backbone, 2), CLASSES)
    finally:
        for hook in hooks:
            hook.remove()
    patches = (tiny_backbone.dims.image_size // 8) ** 2 + 1
    assert seen["vision"] == [patches + 3, patches + 5]
    assert seen["text"][1] - seen["text"][0] == 2  # 3 present, then carry 3 + add 2


def test_carrying_changes_what_the_next_layer_sees(tiny_backbone):
    """Same parameters, carry 2 vs carry 0 at layer 1: the carried prompts change the logits."""
    carry = build(tiny_backbone, MPLConfig(preset="custom", schedule=[[2, 0], [1, 2]]))
    drop = build(tiny_backbone, MPLConfig(preset="custom", schedule=[[2, 0], [1, 0]]))
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
        ({"schedule": [[2, 0]]}, r"method.schedule is given: set method.preset=custom"),
        ({"preset": "custom"}, r"method.preset=custom needs method.schedule"),
        ({"preset": "replace"}, r"method.preset 'replace' is not one of"),
        ({"prompt_depth": 0}, r"method.prompt_depth must be >= 1"),
    ],
)
def test_invalid_schedules_are_rejected_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPLConfig(**kwargs)


def test_schedule_must_fit_the_backbone(tiny_backbone):
    dims = tiny_backbone.dims
    assert "method.prompt_depth" in MPLConfig(prompt_depth=3).check(dims)[0]
    long = MPLConfig(preset="custom", schedule=[[2, 0], [2, 2], [2, 4]])
    assert "method.schedule: 3 layers exceed" in long.check(dims)[0]
    wide = MPLConfig(preset="custom", schedule=[[10, 0], [10, 10]])
    assert "text context" in wide.check(dims)[0]


def test_layers_that_only_carry_have_no_parameters(tiny_backbone):
    cfg = MPLConfig(preset="custom", schedule=[[2, 0], [0, 1]])
    model = build(tiny_backbone, cfg)
    assert set(model.method.text_prompts) == {"0"} and set(model.method.couplings) == {"0"}
    count = sum(p.numel() for p in model.method.parameters())
    assert count == paper_param_count("mpl", cfg, tiny_backbone.dims)
    assert model.method.class_text("{}", "zero") == "of a zero."
