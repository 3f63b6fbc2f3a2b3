"""The conformance suite every registered method passes, plus the engine's invariants."""

from __future__ import annotations

import dataclasses
import io

import open_clip
import pytest
import torch
import torch.nn.functional as F

import trainers
from trainers.engine import word_embedder
from trainers.methods.coop import CoOpConfig
from trainers.methods.maple import MaPLeConfig
from trainers.methods.zeroshot import ZeroShotConfig
from trainers.prompted_clip import PromptedCLIP

TEMPLATE = "a photo of a {}."
CLASSES = ["zero", "one", "two", "three", "four"]


def paper_param_count(name: str, cfg, dims) -> int:
    """Trainable parameters of each method as its paper counts them."""
    dt, dv, d = dims.text_width, dims.vision_width, dims.embed_dim
    coupling = dt * dv + dv  # one linear map text width -> vision width

    def mudpt() -> int:
        prompts = cfg.injection_depth * cfg.prompt_length * (dt + dv)
        if cfg.injection == "linear":  # P_0, then the deep layers' shared P and Q
            deep = cfg.injection_depth > 1
            return prompts + coupling + deep * (coupling + cfg.bidirectional * (dv * dt + dt))
        h = cfg.injection_width or dt
        maps = (dt * h + h) + (dv * h + h) + (h * dv + dv) + cfg.bidirectional * (h * dt + dt)
        return prompts + maps + cfg.injection_layers * (4 * h * h + 4 * h + 2 * h)

    def mope() -> int:  # trainers/methods/mope.py docstring: the official code's parameters
        s, n, m = cfg.static_length, cfg.prompt_length, cfg.mapped_length
        s, n, m = cfg.static_prompt * s, cfg.dynamic_prompt * n, cfg.mapped_prompt * m
        k, deep, h = cfg.num_experts, cfg.prompt_depth - 1, cfg.mapper_width
        di, dc = cfg.router_self_dim, cfg.router_cross_dim
        router = dv * di + di + d * dc + dc if cfg.router == "keys" else d * k + k
        routed = cfg.dynamic_prompt and k > 1
        mapper = (deep > 0) * cfg.mapped_prompt * (d * h + 3 * h + h * m * dv + m * dv)
        return (s + n + m) * dv + deep * (s * dv + k * n * dv + routed * router) + mapper

    def mpl() -> int:
        if cfg.design == "official":  # ctx + proj, then per deeper layer n prompts, n_add maps
            maps = 1 + (cfg.prompt_depth - 1) * cfg.n_add
            return cfg.prompt_depth * cfg.prompt_length * dt + maps * coupling
        adds = [add for add, _ in cfg.steps()]
        return sum(adds) * dt + sum(1 for add in adds if add) * coupling

    counts = {
        "zeroshot": lambda: 0,
        # CoOp: an init text is the context (its words), else prompt_length random vectors
        "coop": lambda: (len(cfg.init_text.split()) or cfg.prompt_length) * dt,
        "maple": lambda: cfg.prompt_depth * cfg.prompt_length * dt + cfg.prompt_depth * coupling,
        "mope": mope,
        "mpl": mpl,
        "mudpt": mudpt,
        "pmpo": lambda: cfg.num_prompts * cfg.prompt_length * dt + cfg.depth * coupling,
    }
    return counts[name]()


DEPTH_KNOBS = ("prompt_depth", "depth", "injection_depth")


def small_config(name: str, dims):
    """Paper defaults, shrunk where they exceed the tiny backbone."""
    cfg = trainers.get_method(name).Config().for_backbone(dims)  # CoOp: n fits the context
    layers = min(dims.text_layers, dims.vision_layers)
    shrink = {k: min(getattr(cfg, k), layers) for k in DEPTH_KNOBS if hasattr(cfg, k)}
    if hasattr(cfg, "num_prompts"):  # PMPO: every prompt needs one of the layers
        shrink["num_prompts"] = min(cfg.num_prompts, layers)
    return dataclasses.replace(cfg, **shrink)


def build(backbone, cfg, seed: int = 0) -> PromptedCLIP:
    torch.manual_seed(seed)
    cls = trainers.method_for_config(cfg)
    method = cls(cfg, backbone.dims, word_embedder(backbone, torch.device("cpu")))
    return PromptedCLIP(backbone, method, TEMPLATE)


def conditioning(method, dims, batch_size: int) -> trainers.methods.Conditioning:
    """What the engine would fill in for `method` (random features of the right shapes)."""
    cond = trainers.methods.Conditioning(batch_size=batch_size)
    if method.needs_image:
        cond.image_features = F.normalize(torch.randn(batch_size, dims.embed_dim), dim=-1)
    if method.needs_class_features:
        cond.class_features = F.normalize(torch.randn(len(CLASSES), dims.embed_dim), dim=-1)
    return cond


def images(backbone, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    size = backbone.dims.image_size
    return torch.randn(n, 3, size, size, generator=g)


def as_if_trained(model: PromptedCLIP, scale: float = 0.05) -> None:
    """Move every prompt parameter away from its init, so a comparison is not about the init
    (copies of one layer, zeros) alone."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.method.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def zero_shot_logits(backbone, imgs: torch.Tensor) -> torch.Tensor:
    """open_clip's own forward: encode_image / encode_text on the hand-written template."""
    model = backbone.model
    text = backbone.tokenizer([TEMPLATE.format(c) for c in CLASSES])
    with torch.no_grad():
        img = F.normalize(model.encode_image(imgs), dim=-1)
        txt = F.normalize(model.encode_text(text), dim=-1)
    return model.logit_scale.exp() * img @ txt.T


@pytest.fixture(params=trainers.list_methods())
def method_name(request) -> str:
    return request.param


def test_trainable_parameters_are_the_method_and_match_the_paper(tiny_backbone, method_name):
    cfg = small_config(method_name, tiny_backbone.dims)
    model = build(tiny_backbone, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.method.parameters()}
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    count = sum(p.numel() for p in trainable)
    assert count == paper_param_count(method_name, cfg, tiny_backbone.dims)


def test_same_seed_same_logits_and_state_dict_round_trip(tiny_backbone, method_name):
    cfg = small_config(method_name, tiny_backbone.dims)
    a, b = build(tiny_backbone, cfg, seed=3), build(tiny_backbone, cfg, seed=3)
    x = images(tiny_backbone)
    with torch.no_grad():
        torch.testing.assert_close(a(x, CLASSES)[0], b(x, CLASSES)[0])
    buffer = io.BytesIO()
    torch.save(a.method.state_dict(), buffer)
    c = build(tiny_backbone, cfg, seed=4)
    c.method.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    with torch.no_grad():
        torch.testing.assert_close(a(x, CLASSES)[0], c(x, CLASSES)[0])


def test_gradients_reach_every_prompt_parameter(tiny_backbone, method_name):
    cfg = small_config(method_name, tiny_backbone.dims)
    model = build(tiny_backbone, cfg)
    logits, _ = model(images(tiny_backbone), CLASSES)
    if not list(model.method.parameters()):
        return
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_plan_fits_the_backbone(tiny_backbone, method_name):
    cfg = small_config(method_name, tiny_backbone.dims)
    assert cfg.check(tiny_backbone.dims) == []
    method = build(tiny_backbone, cfg).method
    plan = method.plan(conditioning(method, tiny_backbone.dims, batch_size=2))
    assert all(0 <= layer < tiny_backbone.dims.text_layers for layer in plan.text)
    assert all(0 <= layer < tiny_backbone.dims.vision_layers for layer in plan.vision)


def test_without_prompts_the_logits_equal_open_clip_zero_shot(tiny_backbone):
    model = build(tiny_backbone, ZeroShotConfig())
    x = images(tiny_backbone)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    torch.testing.assert_close(ours, zero_shot_logits(tiny_backbone, x), atol=1e-5, rtol=1e-5)


def test_coop_initialised_from_the_template_words_is_zero_shot(tiny_backbone):
    """Context vectors = embeddings of "a photo of a" reproduce the hand-written prompt."""
    model = build(tiny_backbone, CoOpConfig(prompt_length=4, init_text="a photo of a"))
    x = images(tiny_backbone)
    with torch.no_grad():
        ours = model(x, CLASSES)[0]
    torch.testing.assert_close(ours, zero_shot_logits(tiny_backbone, x), atol=1e-5, rtol=1e-5)


def test_maple_keeps_the_rest_of_its_init_text_frozen(tiny_backbone):
    """MaPLe (b=2, "a photo of a"): [ctx ctx] of a {class}. -- zero-shot at init, layer 0."""
    cfg = MaPLeConfig(prompt_length=2, prompt_depth=1)
    model = build(tiny_backbone, cfg)
    assert model.method.class_text(TEMPLATE, "zero") == "of a zero."
    with torch.no_grad():
        text = model.text_features(CLASSES)
        ref = F.normalize(
            tiny_backbone.model.encode_text(
                tiny_backbone.tokenizer([TEMPLATE.format(c) for c in CLASSES])
            ),
            dim=-1,
        )
    torch.testing.assert_close(text, ref, atol=1e-5, rtol=1e-5)


def test_maple_vision_prompts_change_image_features(tiny_backbone):
    cfg = MaPLeConfig(prompt_length=2, prompt_depth=2)
    model = build(tiny_backbone, cfg)
    x = images(tiny_backbone)
    plan = model.method.plan(trainers.methods.Conditioning(batch_size=4))
    with torch.no_grad():
        prompted = model.encode_image(x, plan)
        plain = tiny_backbone.model.encode_image(x)
    assert not torch.allclose(prompted, plain, atol=1e-4)


def test_method_config_validation_names_the_key(tiny_backbone):
    with pytest.raises(ValueError, match="method.prompt_depth"):
        MaPLeConfig(prompt_depth=0)
    assert "method.prompt_depth" in MaPLeConfig(prompt_depth=9).check(tiny_backbone.dims)[0]


def test_open_clip_model_is_not_modified(tiny_backbone):
    assert type(tiny_backbone.model) is open_clip.CLIP
    assert tiny_backbone.model.transformer.batch_first


def test_widths_and_depths_come_from_the_backbone(uneven_backbone, method_name):
    """On a backbone where d_t, d_v, D and the depths all differ: count, forward, backward."""
    dims = uneven_backbone.dims
    cfg = small_config(method_name, dims)
    model = build(uneven_backbone, cfg)
    assert sum(p.numel() for p in model.method.parameters()) == paper_param_count(
        method_name, cfg, dims
    )
    logits, _ = model(images(uneven_backbone), CLASSES)
    assert logits.shape == (4, len(CLASSES))
    if list(model.method.parameters()):
        F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
        assert all(p.grad is not None for p in model.method.parameters())
