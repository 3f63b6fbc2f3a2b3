"""Speed-ups that must not change a result: text cut at the longest end-of-text token, and
prompt-free features computed once (trainers.frozen)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import trainers
from tests.trainers.same_result import assert_same_metrics
from trainers import TrainConfig, TrialConfig, fit
from trainers.configs import DataConfig, OptimConfig
from trainers.data import sample_few_shot
from trainers.engine import word_embedder
from trainers.frozen import FrozenFeatures
from trainers.methods.base import Conditioning
from trainers.prompted_clip import ClassTokens, PromptedCLIP


def trial(method: str, cache: bool, seed: int = 1) -> TrialConfig:
    config = trainers.get_method(method).Config()
    if hasattr(config, "prompt_depth"):
        config = dataclasses.replace(config, prompt_depth=2)
    return TrialConfig(
        method=config,
        dataset=DataConfig(shots=4, batch_size=8, template="a photo of the number {}."),
        optim=OptimConfig(warmup_epochs=0, lr=0.05),
        train=TrainConfig(epochs=3, cache_frozen=cache),
        seed=seed,
    )


@pytest.mark.parametrize("method", ["coop", "mope", "maple", "zeroshot"])
def test_caching_frozen_features_changes_no_result(method, tiny_backbone, digits):
    cached = list(fit(trial(method, cache=True), tiny_backbone, digits))
    plain = list(fit(trial(method, cache=False), tiny_backbone, digits))
    for a, b in zip(cached, plain):  # features batched differently round differently
        assert_same_metrics(a.metrics, b.metrics, digits)
    for name, tensor in cached[-1].method.state_dict().items():
        torch.testing.assert_close(tensor, plain[-1].method.state_dict()[name], atol=1e-5, rtol=0)


def test_the_image_side_of_coop_is_computed_once_for_all_seeds_and_epochs(tiny_backbone, digits):
    frozen = FrozenFeatures()
    runs = [fit(trial("coop", True, seed), tiny_backbone, digits, frozen=frozen) for seed in (1, 2)]
    for run in runs:
        next(run)
    after_first_epoch = frozen.computed
    for run in runs:
        list(run)
    shots = [sample_few_shot(digits.train.labels, digits.base_classes, 4, s) for s in (1, 2)]
    seen_train = len(set(shots[0].tolist()) | set(shots[1].tolist()))
    # every image once (CoOp's text branch is prompted: no text is frozen); seed 2 reused seed 1's
    assert after_first_epoch == seen_train + len(digits.val)
    assert frozen.computed == after_first_epoch  # later epochs computed nothing frozen again
    assert frozen.reused > 0


def test_fused_seeds_compute_an_image_both_draw_in_one_step_once(tiny_backbone, digits):
    frozen = FrozenFeatures()
    seeds = (1, 2, 3)
    list(trainers.fit_seeds(trial("coop", True), seeds, tiny_backbone, digits, frozen=frozen))
    shots = [sample_few_shot(digits.train.labels, digits.base_classes, 4, s) for s in seeds]
    distinct = len(set().union(*(set(s.tolist()) for s in shots)))
    assert distinct < sum(len(s) for s in shots)  # the seeds do share images
    assert frozen.computed == distinct + len(digits.val)


def test_a_key_twice_in_one_batch_is_computed_once():
    frozen, calls = FrozenFeatures(), []

    def compute(x):
        calls.append(len(x))
        return x * 2

    out = frozen.rows(["a", "b", "a"], torch.tensor([[1.0], [2.0], [1.0]]), compute)
    assert calls == [2] and out.squeeze(1).tolist() == [2.0, 4.0, 2.0]
    assert (frozen.computed, frozen.reused) == (2, 1)


def test_prompted_towers_are_never_served_from_the_cache(tiny_backbone, digits):
    frozen = FrozenFeatures()
    list(fit(trial("maple", True), tiny_backbone, digits, frozen=frozen))
    assert frozen.computed == 0  # MaPLe prompts both towers: nothing about it is frozen


def test_mope_encodes_its_frozen_text_branch_once_per_class_list(tiny_backbone, digits):
    frozen = FrozenFeatures()
    list(fit(trial("mope", True), tiny_backbone, digits, frozen=frozen))
    assert len(frozen._blocks) == 2  # base and new class lists, whatever the number of batches


@pytest.mark.parametrize("method", ["coop", "maple", "pmpo"])
def test_cutting_text_at_the_longest_eot_is_exact(method, tiny_backbone):
    names = ["cat", "golden retriever", "a very long and unusual class name indeed"]
    config = trainers.get_method(method).Config()
    if hasattr(config, "prompt_depth"):
        config = dataclasses.replace(config, prompt_depth=2)
    prompts = trainers.get_method(method)(
        config, tiny_backbone.dims, word_embedder(tiny_backbone, torch.device("cpu"))
    )
    model = PromptedCLIP(tiny_backbone, prompts, "a photo of a {}.")
    cond = Conditioning(batch_size=1)
    if prompts.needs_class_features:
        cond.class_features = model.template_features(names)
    plan = prompts.plan(cond)
    cut = model.class_tokens(names)
    with torch.no_grad():
        short = model.encode_text(plan, names, cond)
        ids = model.tokenizer([prompts.class_text(model.template, n) for n in names])
        context = model.clip.positional_embedding.shape[0]
        n_prompts = plan.text[0].add.shape[-2]
        emb = model.clip.token_embedding(ids[:, : context - n_prompts])
        model._class_cache[(model.template, *names)] = ClassTokens(emb[:, :1], emb[:, 1:], cut.eot)
        full = model.encode_text(plan, names, cond)
    assert cut.rest.shape[1] + 1 + n_prompts < context  # the cut really is shorter
    torch.testing.assert_close(short, full, atol=1e-5, rtol=0)
