"""MoPE as its authors ran it: the official router and prompts (checked against an independent
forward), the thresholded importance loss, training-only noise, and experts that specialise."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tests.trainers.reference import mope as reference
from tests.trainers.test_methods import CLASSES, TEMPLATE, build, images, paper_param_count
from trainers import TrainConfig, TrialConfig, fit
from trainers.backbone import dims_of, load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig
from trainers.data import load_task
from trainers.data.tiny_tasks import PRESETS
from trainers.evaluation import ImagePrep
from trainers.methods import Conditioning, PromptPlan
from trainers.methods.mope import MoPE, MoPEConfig, importance_loss, routing_entropy
from trainers.prompted_clip import PromptedCLIP

SHIPPED = BackboneConfig(model="ablate-tiny-clip", pretrained="shipped")
MNIST_TEMPLATE = PRESETS["tiny_mnist"]["template"]


@pytest.fixture(scope="module")
def tiny_clip():
    return load(SHIPPED)


@pytest.fixture(scope="module")
def tiny_mnist():
    return load_task(DataConfig(name="tiny_mnist"))


def jittered(model: PromptedCLIP, scale: float = 0.05, seed: int = 5) -> dict[str, torch.Tensor]:
    """Move every trainable tensor off its initial value (zero biases would hide mistakes);
    return the method's state by name, for the reference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.method.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return {k: v.detach().clone() for k, v in model.method.state_dict().items()}


CONFIGS = {
    "default": {},
    "linear": {"router": "linear", "router_temperature": 1.0},
    "no static, 3 experts": {"static_prompt": False, "num_experts": 3, "mapped_length": 2},
    "one expert": {"num_experts": 1},
    "no mapper, depth 2": {"mapped_prompt": False, "prompt_depth": 2},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_equal_the_independent_reference_forward(tiny_clip, name):
    cfg = MoPEConfig(**{"prompt_depth": 4, **CONFIGS[name]})
    model = build(tiny_clip, cfg).eval()
    tensors = jittered(model)
    x = images(tiny_clip, n=6)
    with torch.no_grad():
        ours, _ = model(x, CLASSES)
        ref = reference.logits(
            tiny_clip.model, tiny_clip.tokenizer, tensors, cfg, x, CLASSES, TEMPLATE
        )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_the_reference_comparison_can_fail(tiny_clip):
    """Negative controls: one key column, or routing on the patches only, move the logits."""
    cfg = MoPEConfig(prompt_depth=4)
    model = build(tiny_clip, cfg).eval()
    tensors = jittered(model)
    x = images(tiny_clip, n=6)
    with torch.no_grad():
        ours, _ = model(x, CLASSES)
        keys = dict(tensors)
        keys["routers.1.keys"] = keys["routers.1.keys"].roll(1, dims=1)
        moved = reference.logits(
            tiny_clip.model, tiny_clip.tokenizer, keys, cfg, x, CLASSES, TEMPLATE
        )
    assert (ours - moved).abs().max() > 1e-3
    routing = reference.routing

    def patches_only(p, cfg, i, tokens, c):  # a design detail changed: prompts left out of pooling
        return routing(p, cfg, i, tokens[:, : tokens.shape[1] - cfg.prompt_tokens()], c)

    reference.routing = patches_only
    try:
        with torch.no_grad():
            moved = reference.logits(
                tiny_clip.model, tiny_clip.tokenizer, tensors, cfg, x, CLASSES, TEMPLATE
            )
    finally:
        reference.routing = routing
    assert (ours - moved).abs().max() > 1e-3


def test_default_trainable_parameters_on_vit_b16_are_the_official_designs():
    dims = dims_of("ViT-B-16")
    cfg = MoPEConfig()
    torch.manual_seed(0)
    method = MoPE(cfg, dims, lambda text: torch.zeros(len(text.split()), dims.text_width))
    count = sum(p.numel() for p in method.parameters() if p.requires_grad)
    # input prompt 13 x 768; 11 layers x (static 6 x 768 + 4 experts x 6 x 768 + own 768 -> 2 +
    # complementary 512 -> 8); shared mapper 512 -> 384 (+ BN affine) -> 768
    assert count == 9_984 + 11 * (4_608 + 18_432 + 1_538 + 4_104) + 196_992 + 768 + 295_680
    assert count == 818_926 == paper_param_count("mope", cfg, dims)
    keys = method.routers[0].keys
    assert not keys.requires_grad and "routers.0.keys" in method.state_dict()
    torch.testing.assert_close(keys.T @ keys, torch.eye(4))  # orthonormal experts' keys


def test_importance_loss_is_the_official_thresholded_cv2():
    k = 4
    uniform = torch.full((2, 8, k), 1 / k)
    collapsed = F.one_hot(torch.zeros(2, 8, dtype=torch.long), k).float()
    assert importance_loss(uniform, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert importance_loss(collapsed, 0.1).item() == pytest.approx(k)  # unbiased std
    mild = torch.tensor([[[0.3, 0.2, 0.25, 0.25]]])  # CV^2 = 0.0267 <= 0.1: not counted
    assert importance_loss(mild, 0.1).item() == 0.0
    assert importance_loss(mild, 0.01).item() == pytest.approx(0.02667, abs=1e-4)
    both = torch.cat([mild, collapsed[:1, :1]])  # mean over layers, the zeroed one included
    assert importance_loss(both, 0.1).item() == pytest.approx(k / 2)


def test_routing_is_recorded_per_conditioned_layer_and_weighted_into_the_loss(tiny_clip):
    cfg = MoPEConfig(num_experts=3, prompt_depth=3, balance_weight=0.5, balance_threshold=0.0)
    model = build(tiny_clip, cfg).eval()
    _, plan = model(images(tiny_clip, n=5), CLASSES)
    routing = plan.extras["routing"]
    assert routing.shape == (2, 5, 3) and (routing >= 0).all()
    torch.testing.assert_close(routing.sum(-1), torch.ones(2, 5))
    losses = model.method.aux_losses(plan)
    torch.testing.assert_close(losses["balance"], 0.5 * importance_loss(routing, 0.0))
    assert losses["balance"].requires_grad
    diag = model.method.diagnostics(plan)
    assert sum(diag[f"expert_usage_{j}"] for j in range(3)) == pytest.approx(1.0)
    assert diag["routing_entropy"] == pytest.approx(routing_entropy(routing).item())
    one = build(tiny_clip, dataclasses.replace(cfg, num_experts=1))
    assert one.method.aux_losses(one(images(tiny_clip), CLASSES)[1]) == {}


def test_noise_and_dropout_only_in_training_and_reproducible_per_seed(tiny_backbone):
    cfg = MoPEConfig(prompt_depth=3)
    x = images(tiny_backbone)
    a, b = build(tiny_backbone, cfg, seed=1), build(tiny_backbone, cfg, seed=1)
    with torch.no_grad():
        a.eval(), b.eval()
        torch.testing.assert_close(a(x, CLASSES)[0], a(x, CLASSES)[0], atol=0, rtol=0)
        evaluated = a(x, CLASSES)[0]
        a.train(), b.train()
        first, plan = a(x, CLASSES)
        torch.testing.assert_close(a(x, CLASSES)[0], first, atol=0, rtol=0)  # same step
        a.method.aux_losses(plan)  # the step's losses taken: the next step draws anew
        second = a(x, CLASSES)[0]
        torch.manual_seed(123)  # the global RNG plays no part
        torch.testing.assert_close(b(x, CLASSES)[0], first, atol=0, rtol=0)
    assert (first - evaluated).abs().max() > 1e-4  # dropout and noise act in training
    assert (first - second).abs().max() > 1e-4  # a new draw every step
    assert int(a.method.noise_step) == 1
    assert not a.method.mapper.norm.training  # BatchNorm stays on its fixed statistics
    quiet = dataclasses.replace(cfg, router_noise=0.0, prompt_dropout=0.0)
    c = build(tiny_backbone, quiet, seed=1)
    with torch.no_grad():
        c.eval()
        evaluated = c(x, CLASSES)[0]
        c.train()
        torch.testing.assert_close(c(x, CLASSES)[0], evaluated)


def test_complementary_feature_is_the_paired_text_on_fusion_data(tiny_backbone):
    method = build(tiny_backbone, MoPEConfig(prompt_depth=2)).method
    y = F.normalize(torch.randn(3, tiny_backbone.dims.embed_dim), dim=-1)
    image = F.normalize(torch.randn(3, tiny_backbone.dims.embed_dim), dim=-1)
    cond = Conditioning(batch_size=3, image_features=image, paired_text_features=y)
    assert method.condition(cond) is y
    assert method.condition(Conditioning(batch_size=3, image_features=image)) is image


def routing_by_class(method, backbone, task, per_class: int = 16) -> torch.Tensor:
    """Mean routing (layers, classes, k) of each base class's first val images."""
    model = PromptedCLIP(backbone, method, MNIST_TEMPLATE).eval()
    split = ImagePrep(backbone, torch.device("cpu"))(task.val)
    names = task.names(task.base_classes)
    means = []
    for label in task.base_classes:
        index = (split.labels == label).nonzero().squeeze(1)[:per_class]
        with torch.no_grad():
            _, plan = model(split.images[index], names)
        means.append(plan.extras["routing"].mean(dim=1))
    return torch.stack(means, dim=1)


def train(backbone, task, epochs: int = 4, **knobs):
    cfg = TrialConfig(
        method=MoPEConfig(prompt_depth=4, **knobs),
        dataset=DataConfig(name="tiny_mnist", template=MNIST_TEMPLATE, shots=16, batch_size=16),
        backbone=SHIPPED,
        optim=OptimConfig(lr=0.05, warmup_epochs=0),
        train=TrainConfig(epochs=epochs, test_at_end=False),
        seed=1,
    )
    return list(fit(cfg, backbone, task))[-1]


def class_spread(means: torch.Tensor) -> float:
    """Largest L1 distance between two classes' mean routing vectors, over layers."""
    return max(torch.cdist(layer, layer, p=1).max().item() for layer in means)


def test_experts_specialise_on_tiny_mnist_and_the_old_router_does_not(tiny_clip, tiny_mnist):
    """The official router: entropy well below log k and class-dependent routing after 4
    epochs. Negative control: the earlier linear router at temperature 1 stays uniform."""
    for knobs, specialises in (
        ({}, True),
        ({"router": "linear", "router_temperature": 1.0}, False),
    ):
        last = train(tiny_clip, tiny_mnist, **knobs)
        entropy = last.metrics["diag/routing_entropy"] / math.log(4)
        spread = class_spread(routing_by_class(last.method, tiny_clip, tiny_mnist))
        if specialises:  # measured 0.32 and 0.26
            assert entropy < 0.6 and spread > 0.12, (knobs, entropy, spread)
        else:  # measured 0.998 and 0.027
            assert entropy > 0.95 and spread < 0.06, (knobs, entropy, spread)


def test_prompt_artifacts_describe_every_saved_tensor(tiny_backbone):
    """The artifact holds the prompts and maps, not the scalar noise counters."""
    from trainers.inspect import describe_prompts

    method = build(tiny_backbone, MoPEConfig(prompt_depth=2)).method
    saved = method.prompt_tensors()
    assert "experts" in saved and "noise_step" not in saved and "noise_seed" not in saved
    assert describe_prompts(method, tiny_backbone)


def test_usage_entropy_tells_specialised_from_collapsed_layers(tiny_backbone):
    """Both routings are one-hot per image; only the specialised one spreads a layer's images."""
    method = build(tiny_backbone, MoPEConfig(num_experts=4, prompt_depth=2)).method
    collapsed = F.one_hot(torch.tensor([[0] * 8, [3] * 8]), 4).float()  # a layer, an expert
    spread = F.one_hot(torch.arange(8).remainder(4).repeat(2, 1), 4).float()
    for routing, usage_entropy in ((collapsed, 0.0), (spread, math.log(4))):
        diag = method.diagnostics(PromptPlan(extras={"routing": routing}))
        assert diag["routing_entropy"] == pytest.approx(0.0, abs=1e-6)
        assert diag["usage_entropy"] == pytest.approx(usage_entropy, abs=1e-6)
