"""Every searchable knob is alive: the conformance test over every registered method and field.

Changing a field of a method's config from its value changes the trainable parameters (their
names, shapes or initial values), the logits (in evaluation or, for training-only knobs such as
routing noise, in training mode) or the auxiliary losses; or the config declares the field inert
under the current values (`MethodConfig.inert_knobs`), and then changing it changes none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import trainers
from tests.trainers.test_methods import CLASSES, TEMPLATE, build, images, small_config
from trainers.backbone import Backbone, load
from trainers.configs import BackboneConfig
from trainers.engine import word_embedder
from trainers.methods.base import MethodConfig, knob_help
from trainers.prompted_clip import PromptedCLIP

LABELS = torch.tensor([0, 1, 2, 3])
ATOL = 1e-6  # well above float32 rounding of identical work, far below any real change

# Values for fields whose alternative cannot be guessed from the type (choices, lists).
ALTERNATIVES: dict[tuple[str, str], list[Any]] = {
    ("pmpo", "partition"): [[0, 1]],
    ("mope", "router"): ["linear", "keys"],
    ("mope", "balance_threshold"): [1.0],  # above the CV^2 of 4 images: counts or not
    ("mpl", "design"): ["both_branches", "official"],
    ("mpl", "preset"): ["maple", "accumulate", "keep_first"],
    ("mpl", "schedule"): [[[1, 0], [1, 1]]],
    ("mudpt", "injection"): ["attention", "linear"],
    ("mudpt", "injection_width"): [32],  # 0 = the text width; 1 fits no head count
}
# Configs besides the default under which every field is checked as well (declared conditions).
EXTRA_BASES: dict[str, list[dict[str, Any]]] = {
    "mope": [{"num_experts": 1}],
    "mudpt": [{"injection": "attention"}],
    "mpl": [{"design": "both_branches"}],
    "coop": [{"init_text": "a photo of a"}],
}
# On 4 layers PMPO's 4 prompts would fill the depth: 2 leave both depth and partition a choice.
DEFAULT_CHANGES: dict[str, dict[str, Any]] = {"pmpo": {"num_prompts": 2}}


def candidates(method: str, field: dataclasses.Field, value: Any) -> list[Any]:
    """Values to try in place of `value`, most telling first."""
    return [v for v in _candidates(method, field, value) if v != value]


def _candidates(method: str, field: dataclasses.Field, value: Any) -> list[Any]:
    """Values of the field's type near `value`."""
    if (method, field.name) in ALTERNATIVES:
        return [v for v in ALTERNATIVES[method, field.name] if v != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, value // 2, 1]
    if isinstance(value, float):
        return [value * 2, value / 2] if value else [0.1]
    if isinstance(value, str):
        return ["a photo", "a", ""] if field.name == "init_text" else [value + "x"]
    return []


def configs(method: str, dims) -> Iterator[tuple[str, MethodConfig]]:
    """The default config and the extra bases that fit the backbone, with a label."""
    base = dataclasses.replace(small_config(method, dims), **DEFAULT_CHANGES.get(method, {}))
    yield "default", base
    for changes in EXTRA_BASES.get(method, []):
        fields = {f.name for f in dataclasses.fields(base)}
        if set(changes) <= fields:
            yield str(changes), dataclasses.replace(base, **changes)


def variant(method: str, cfg: MethodConfig, field: dataclasses.Field, dims) -> MethodConfig | None:
    """`cfg` with `field` changed to the first candidate that is a valid config on `dims`."""
    for value in candidates(method, field, getattr(cfg, field.name)):
        try:
            changed = dataclasses.replace(cfg, **{field.name: value})
        except (ValueError, TypeError):
            continue
        if not changed.check(dims):
            return changed
    return None


def observe(backbone, cfg: MethodConfig, method_cls: type | None = None) -> dict[str, Any]:
    """What a knob can change: parameters, eval and train logits, auxiliary losses."""
    if method_cls is None:
        model = build(backbone, cfg, seed=0)
    else:
        torch.manual_seed(0)
        embed = word_embedder(backbone, torch.device("cpu"))
        model = PromptedCLIP(backbone, method_cls(cfg, backbone.dims, embed), TEMPLATE)
    x = images(backbone)
    params = {k: v.detach().clone() for k, v in model.method.named_parameters()}
    with torch.no_grad():
        model.train(False)
        eval_logits, _ = model(x, CLASSES)
    model.train(True)
    torch.manual_seed(7)  # the same training noise for both configs
    train_logits, plan = model(x, CLASSES)
    aux = model.method.aux_losses(plan)
    # a zero-initialised output (a residual branch) shows a knob only through the gradients
    loss = torch.nn.functional.cross_entropy(train_logits, LABELS) + sum(aux.values())
    named = list(model.method.named_parameters())
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True) if named else []
    return {
        "params": params,
        "eval": eval_logits,
        "train": train_logits.detach(),
        "aux": {k: float(v.detach()) for k, v in aux.items()},
        "grads": {k: g for (k, _), g in zip(named, grads, strict=True) if g is not None},
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Which of the observations differ."""
    out = []
    pa, pb = a["params"], b["params"]
    if {k: v.shape for k, v in pa.items()} != {k: v.shape for k, v in pb.items()}:
        out.append("parameter shapes")
    elif any(not torch.allclose(pa[k], pb[k], atol=ATOL) for k in pa):
        out.append("initial parameters")
    for key in ("eval", "train"):
        if a[key].shape != b[key].shape or not torch.allclose(a[key], b[key], atol=ATOL):
            out.append(f"{key} logits")
    ga, gb = a["grads"], b["grads"]
    same_grads = ga.keys() == gb.keys() and all(
        ga[k].shape == gb[k].shape and torch.allclose(ga[k], gb[k], atol=ATOL) for k in ga
    )
    if not same_grads:
        out.append("gradients")
    if a["aux"].keys() != b["aux"].keys() or any(
        abs(a["aux"][k] - b["aux"][k]) > ATOL for k in a["aux"]
    ):
        out.append("auxiliary losses")
    return out


@pytest.fixture(scope="module")
def deep_backbone() -> Backbone:
    """tiny_clip's architecture (4 layers, so depth knobs have room), random weights."""
    torch.manual_seed(0)
    return load(BackboneConfig(model="ablate-tiny-clip", pretrained=None))


@pytest.mark.parametrize("method", trainers.list_methods())
def test_every_knob_changes_the_computation_or_is_declared_inert(deep_backbone, method):
    tiny_backbone, dims = deep_backbone, deep_backbone.dims
    problems = []
    for label, cfg in configs(method, dims):
        reference = observe(tiny_backbone, cfg)
        inert = cfg.inert_knobs()
        for field in dataclasses.fields(cfg):
            changed = variant(method, cfg, field, dims)
            if changed is None:
                problems.append(f"{label}: {field.name}: no valid alternative value to try")
                continue
            diff = differences(reference, observe(tiny_backbone, changed))
            new_value = getattr(changed, field.name)
            if field.name in inert and diff:
                problems.append(
                    f"{label}: {field.name}={new_value!r} declared inert "
                    f"({inert[field.name]}) but changes the {', '.join(diff)}"
                )
            elif field.name not in inert and not diff:
                problems.append(f"{label}: {field.name}={new_value!r} changes nothing")
    assert not problems, "\n".join(problems)


def test_the_check_can_fail(tiny_backbone):
    """Negative control: a knob the method never reads is caught."""

    @dataclasses.dataclass
    class Unused(type(small_config("coop", tiny_backbone.dims))):
        unused: int = 3

    coop = trainers.get_method("coop")
    cfg = Unused(**dataclasses.asdict(small_config("coop", tiny_backbone.dims)))
    reference = observe(tiny_backbone, cfg, coop)
    assert (
        differences(reference, observe(tiny_backbone, dataclasses.replace(cfg, unused=4), coop))
        == []
    )
    longer = dataclasses.replace(cfg, init_text="", prompt_length=cfg.prompt_length + 1)
    assert differences(reference, observe(tiny_backbone, longer, coop))


@pytest.mark.parametrize("method", trainers.list_methods())
def test_every_knob_has_a_one_line_help(method):
    cls = trainers.get_method(method).Config
    missing = [f.name for f in dataclasses.fields(cls) if not knob_help(cls, f.name)]
    assert not missing, f"{method}: no help for {missing}: declare them with knob(default, help)"
    long = [f.name for f in dataclasses.fields(cls) if "\n" in knob_help(cls, f.name)]
    assert not long, f"{method}: help of {long} spans several lines"


BOUNDED = [
    (name, f.name, f.metadata["minimum"])
    for name in trainers.list_methods()
    for f in dataclasses.fields(trainers.get_method(name).Config)
    if "minimum" in f.metadata
]


@pytest.mark.parametrize(("method", "key", "least"), BOUNDED, ids=lambda x: str(x))
def test_every_declared_minimum_is_enforced(method, key, least):
    config = trainers.get_method(method).Config
    below = least - 1 if isinstance(least, int) and least >= 1 else least - 0.5
    with pytest.raises(ValueError, match=f"method.{key} must be >= {least}, got {below}"):
        config(**{key: below})
