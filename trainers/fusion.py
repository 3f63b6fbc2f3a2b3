"""Training on a multimodal fusion dataset (image + paired text -> label(s)), MoPE's own setting.

`trainers.fit_seeds` hands a `FusionTask` (trainers.data.fusion) to `run_seeds` here. As in
MoPE's paper, the image is the main modality and the text the complementary one, in a sequential
pipeline:

1. the paired text goes through the frozen CLIP text encoder once (normalised EOT feature y,
   computed once per example and kept in the trial's `FrozenFeatures`);
2. the method's vision prompts are planned with `Conditioning.paired_text_features = y`; MoPE
   routes its experts and maps its prompt from y (`MoPE.condition`), other methods ignore it
   (their own vision prompts, if any, are unconditioned; CoOp-style text prompts play no part);
3. the prompted image encoder's normalised feature goes through a linear head (trainable, part
   of the method's state as `fusion_head`), initialised as CLIP's zero-shot classifier: the
   class names in `dataset.template`, times CLIP's logit scale (multi-label: each class's bias
   centred on the few-shot images, see `FusionHead`).

Loss: cross-entropy (single-label) or binary cross-entropy per class (multi-label), plus the
method's aux losses. Metrics: `{split}/acc`, or `{split}/macro_f1` and `{split}/micro_f1` at a
sigmoid threshold of 0.5 (MM-IMDB's). Training is few-shot (`dataset.shots` per class; the
paper's low-shot regime); the same SGD schedule as the loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.configs import TrialConfig
from trainers.data.datasets import Split
from trainers.data.fusion import FusionTask, augment_problems, sample_shots
from trainers.engine import (
    EpochMetrics,
    TrainingDiverged,
    autocast_context,
    learning_rate,
    resolve_device,
    seed_everything,
    set_learning_rate,
    training_state,
    word_embedder,
)
from trainers.evaluation import ImagePrep, eval_batches
from trainers.frozen import FrozenFeatures
from trainers.methods.base import Conditioning
from trainers.metrics import accuracy, f1_scores
from trainers.prompted_clip import PromptedCLIP
from trainers.registry import method_for_config

if TYPE_CHECKING:
    from trainers.backbone import Backbone


class FusionHead(nn.Module):
    """A linear classifier on the prompted image feature, initialised as zero-shot CLIP.

    For multi-label data pass `centre_on`, image features of the training examples: zero-shot
    logits are scale x cosine, and CLIP's cosines (~0.2-0.3) are all positive, so every label
    would start above a sigmoid's 0.5; each class's bias instead starts at minus its mean logit
    over those images, so a label starts positive on the images that match it better than most.
    """

    def __init__(
        self, class_features: Tensor, scale: float, centre_on: Tensor | None = None
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(class_features.shape[1], class_features.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(class_features * scale)
            self.linear.bias.zero_()
            if centre_on is not None:
                self.linear.bias.copy_(-self.linear(centre_on.to(class_features.dtype)).mean(0))

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features)


class FusionModel:
    """The prompted CLIP, its head, and the frozen text features of the paired texts."""

    def __init__(self, model: PromptedCLIP, task: FusionTask) -> None:
        self.model, self.task = model, task
        self.method = model.method

    def text_features(self, split: str, index: list[int]) -> Tensor:
        """Normalised frozen CLIP features (B, D) of the paired texts, each computed once."""
        texts = self.task.texts[split]
        ids = self.model.tokenizer([texts[i] for i in index]).to(self.model.clip.logit_scale.device)
        keys = [("paired_text", self.task.name, split, i) for i in index]
        return self.model.frozen.rows(keys, ids, self._encode)

    @torch.no_grad()
    def _encode(self, ids: Tensor) -> Tensor:
        return F.normalize(self.model.clip.encode_text(ids), dim=-1)

    def __call__(
        self, images: Tensor, split: str, index: list[int], keep: bool
    ) -> tuple[Tensor, Any]:
        """Logits (B, C) and the plan, for images `index` of `split` with their texts."""
        keys = [(self.task.name, split, i) for i in index] if keep else None
        cond = Conditioning(batch_size=len(images))
        cond.paired_text_features = self.text_features(split, index)
        if self.method.needs_image and not self.method.uses_paired_text:
            cond.image_features = self.model.frozen_image_features(images, keys)
        if self.method.needs_class_features:
            cond.class_features = self.model.template_features(self.task.classnames)
        plan = self.method.plan(cond)
        if plan.vision:
            features = F.normalize(self.model.encode_image(images, plan), dim=-1)
        else:
            features = self.model.frozen_image_features(images, keys)
        return self.method.fusion_head(features), plan


def run_seeds(
    cfg: TrialConfig,
    seeds: Sequence[int],
    backbone: Backbone,
    task: FusionTask,
    resumes: Sequence[dict[str, Any] | None],
    frozen: FrozenFeatures | None = None,
) -> Iterator[list[EpochMetrics]]:
    """`fit` for every seed of `seeds`, one after another within each epoch; their metrics in
    order after each epoch."""
    _require_no_augment(cfg)
    fits = [fit(cfg.with_seed(s), backbone, task, r, frozen) for s, r in zip(seeds, resumes)]
    yield from (list(per_seed) for per_seed in zip(*fits))


def _require_no_augment(cfg: TrialConfig) -> None:
    for problem in augment_problems(cfg.dataset):
        raise ValueError(f"{cfg.dataset.name}: {problem}")


def fit(
    cfg: TrialConfig,
    backbone: Backbone,
    task: FusionTask,
    resume: dict[str, Any] | None = None,
    frozen: FrozenFeatures | None = None,
) -> Iterator[EpochMetrics]:
    """Train the method and its head on few-shot examples of `task`; metrics per epoch."""
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    method_cfg = cfg.method.for_backbone(backbone.dims)  # as ablate.config composes it
    method = method_for_config(method_cfg)(
        method_cfg, backbone.dims, word_embedder(backbone, device)
    )
    if frozen is None or not cfg.train.cache_frozen:
        frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    model = PromptedCLIP(backbone, method, cfg.dataset.template, frozen).to(device)
    prep = ImagePrep(backbone, device)
    shots = sample_shots(task.train.labels, cfg.dataset.shots, cfg.seed)
    train = prep(task.train.subset(shots))
    index = shots.tolist()
    scale = float(backbone.model.logit_scale.exp())
    autocast = autocast_context(cfg, device)
    centre_on = None
    if task.multi_label:  # the few-shot images' features, in evaluation-sized batches
        keys, size = [(task.name, "train", i) for i in index], cfg.dataset.eval_batch_size
        with autocast:
            centre_on = torch.cat(
                [
                    model.frozen_image_features(train.images[i : i + size], keys[i : i + size])
                    for i in range(0, len(keys), size)
                ]
            )
    head = FusionHead(model.template_features(task.classnames), scale, centre_on)
    method.add_module("fusion_head", head)
    model.to(device)
    fused = FusionModel(model, task)
    optimizer, shuffle, first = training_state(method, cfg, resume)  # with its head

    for epoch in range(first, cfg.train.epochs + 1):
        lr = learning_rate(cfg, epoch - 1)
        set_learning_rate(optimizer, lr)
        metrics = {"train/lr": lr}
        with autocast:
            metrics |= train_epoch(fused, optimizer, train, index, cfg, shuffle)
            metrics |= evaluate(fused, cfg.train.eval_split, prep, cfg)
            if epoch == cfg.train.epochs and cfg.train.test_at_end:
                metrics |= evaluate(fused, "test", prep, cfg)
        yield EpochMetrics(epoch, metrics, method, optimizer, shuffle)


def loss_of(logits: Tensor, labels: Tensor, multi_label: bool) -> dict[str, Tensor]:
    if multi_label:
        return {"bce": F.binary_cross_entropy_with_logits(logits.float(), labels.float())}
    return {"ce": F.cross_entropy(logits.float(), labels)}


def train_epoch(
    fused: FusionModel,
    optimizer: torch.optim.Optimizer,
    train: Split,
    index: list[int],
    cfg: TrialConfig,
    shuffle: torch.Generator,
) -> dict[str, float]:
    fused.model.train()
    order = torch.randperm(len(train), generator=shuffle)
    totals: dict[str, float] = {}
    steps = 0
    for start in range(0, len(order), cfg.dataset.batch_size):
        batch = order[start : start + cfg.dataset.batch_size]
        logits, plan = fused(train.images[batch], "train", [index[i] for i in batch], True)
        losses = loss_of(logits, train.labels[batch], fused.task.multi_label)
        losses |= fused.method.aux_losses(plan)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} (step {steps}, lr {cfg.optim.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        for name, value in losses.items():
            totals[f"train/{name}"] = totals.get(f"train/{name}", 0.0) + value.item()
        for name, value in fused.method.diagnostics(plan).items():
            totals[f"diag/{name}"] = totals.get(f"diag/{name}", 0.0) + value
    out = {k: v / steps for k, v in totals.items()}
    out["train/loss"] = sum(v for k, v in out.items() if k.startswith("train/"))
    return out


@torch.no_grad()
def evaluate(fused: FusionModel, split_name: str, prep: ImagePrep, cfg: TrialConfig) -> dict:
    """Accuracy, or macro / micro F1 (multi-label), of a split decoded one batch at a time."""
    fused.model.eval()
    split: Split = getattr(fused.task, split_name)
    keep = split_name == cfg.train.eval_split
    batches = eval_batches(prep, split, (split_name, "fusion"), cfg.dataset.eval_batch_size)
    logits = torch.cat(
        [
            fused(images, split_name, list(range(start, start + len(images))), keep)[0].float()
            for start, images in batches
        ]
    )
    labels = split.labels.to(logits.device)
    if not fused.task.multi_label:
        return {f"{split_name}/acc": accuracy(logits, labels)}
    macro, micro = f1_scores(logits, labels)
    return {f"{split_name}/macro_f1": macro, f"{split_name}/micro_f1": micro}
