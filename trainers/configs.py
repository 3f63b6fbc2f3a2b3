"""Typed configuration of one training run (plain dataclasses, no Hydra here).

`ablate.config` registers these schemas with Hydra; `trainers` itself never imports Hydra, so a
trial config can equally be built by hand::

    cfg = TrialConfig(method=CoOpConfig(prompt_length=4), dataset=DataConfig(shots=8))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

PROTOCOLS = ("base2new", "all", "cross_dataset", "domain_generalization")
AUGMENTS = ("none", "crop_flip")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")


@dataclass
class DataConfig:
    """Which images a run trains and evaluates on."""

    name: str = "digits"  # a registered dataset (trainers.data.list_datasets())
    root: str | None = None  # where the dataset lives on disk; None for packaged data
    shots: int = 16  # training images per base class, sampled per seed
    template: str = "a photo of a {}."  # the hand-written prompt of zero-shot CLIP
    batch_size: int = 32
    eval_batch_size: int = 256
    # base2new: train on base classes, score base/new/hm; all: train and score on all classes;
    # cross_dataset / domain_generalization: `all`, then score each of `targets` at the end
    # (trainers.protocols; docs/datasets.md#protocols)
    protocol: str = "base2new"
    targets: list[str] = field(default_factory=list)  # [] = the protocol's standard targets
    # training images: none = as evaluated (their frozen features are cached); crop_flip = a
    # fresh random resized crop and horizontal flip every step, as CoOp/MaPLe/MPL train (Dassl)
    augment: str = "none"
    crop_scale: float = 0.08  # crop_flip: smallest crop area, as a fraction (Dassl's 0.08)

    def __post_init__(self) -> None:
        _require(self.shots >= 1, f"dataset.shots must be >= 1, got {self.shots}")
        _require(self.augment in AUGMENTS, f"dataset.augment must be one of {AUGMENTS}")
        _require(
            0 < self.crop_scale <= 1, f"dataset.crop_scale must be in (0, 1], got {self.crop_scale}"
        )
        _require(self.protocol in PROTOCOLS, f"dataset.protocol must be one of {PROTOCOLS}")
        _require(
            not self.targets or self.protocol in PROTOCOLS[2:],
            f"dataset.targets needs protocol cross_dataset or domain_generalization, "
            f"not {self.protocol!r}",
        )
        _require("{}" in self.template, f"dataset.template needs a '{{}}', got {self.template!r}")
        _require(self.batch_size >= 1, f"dataset.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class BackboneConfig:
    """A frozen open_clip CLIP: model name plus `pretrained` (tag, local file, or None)."""

    model: str = "ablate-tiny"  # open_clip model name (open_clip.list_models())
    pretrained: str | None = None  # open_clip tag ("openai") or a local checkpoint path
    precision: str = "fp32"  # fp32 | bf16 (autocast; bf16 only takes effect on GPU)
    # auto | true | false: QuickGELU (OpenAI's activation) or nn.GELU. auto = what the weights
    # were trained with (a tag's entry in open_clip's table); a checkpoint path may need it set
    quick_gelu: str = "auto"

    def __post_init__(self) -> None:
        choices = ("fp32", "bf16")
        _require(self.precision in choices, f"backbone.precision must be one of {choices}")
        # Hydra hands a str field `true` as "True"; hand-built configs may pass a bool
        self.quick_gelu = str(self.quick_gelu).lower()
        activations = ("auto", "true", "false")
        _require(
            self.quick_gelu in activations,
            f"backbone.quick_gelu must be one of {activations}, got {self.quick_gelu!r}",
        )


@dataclass
class OptimConfig:
    """SGD with a constant warmup then cosine decay, as CoOp/MaPLe train (presets per paper in
    ablate/conf/optim/; docs/methods.md#training-recipes)."""

    optimizer: str = "sgd"  # sgd | adamw (MoPE's)
    lr: float = 0.002
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5  # constant learning rate during warmup (CoOp's "constant" warmup)
    # after warmup: cosine decay to 0 over train.epochs, or step (x gamma at each milestone
    # epoch, counted from 0 as torch's MultiStepLR; MoPE's)
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _require(self.optimizer in OPTIMIZERS, f"optim.optimizer must be one of {OPTIMIZERS}")
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _require(self.schedule in SCHEDULES, f"optim.schedule must be one of {SCHEDULES}")
        _require(0 < self.gamma <= 1, f"optim.gamma must be in (0, 1], got {self.gamma}")
        _require(all(m >= 1 for m in self.milestones), "optim.milestones must be epochs >= 1")


@dataclass
class TrainConfig:
    """How long to train and what to evaluate."""

    epochs: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_split: str = "val"  # split evaluated every epoch; the test split is evaluated at the end
    test_at_end: bool = True
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    cache_frozen: bool = True  # compute prompt-free features once (trainers.frozen); exact
    # a trial's seeds take each step in one forward/backward pass (loop.run_seeds); equal to
    # seed-by-seed training up to float rounding; false for bit-reproducible seeds
    fuse_seeds: bool = True

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _require(self.eval_split in ("val", "test"), "train.eval_split must be 'val' or 'test'")


@dataclass
class TrialConfig:
    """Everything one run needs. `method` is the registered method's own config dataclass."""

    method: Any = None  # a MethodConfig subclass instance
    dataset: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1

    def with_seed(self, seed: int) -> TrialConfig:
        return replace(self, seed=seed)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
