"""What the trial-level benchmarks share: their command-line knobs, the trial they time, and the
timing itself (one trial = every seed of one configuration, as `ablate search` runs it)."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

import trainers
from trainers.backbone import Backbone, load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig, TrainConfig, TrialConfig
from trainers.frozen import FrozenFeatures


def add_trial_arguments(parser: argparse.ArgumentParser, epochs: int, methods: str) -> None:
    parser.add_argument("--model", default="ablate-tiny-clip")
    parser.add_argument("--pretrained", default="shipped", help="'none' for random weights")
    parser.add_argument("--dataset", default="tiny_mnist")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--methods", default=methods)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])


def backbone_config(args: argparse.Namespace) -> BackboneConfig:
    pretrained = None if args.pretrained == "none" else args.pretrained
    if args.model != "ablate-tiny-clip" and args.pretrained == "shipped":
        pretrained = None  # the shipped weights are tiny_clip's only
    return BackboneConfig(model=args.model, pretrained=pretrained, precision=args.precision)


def trial_config(
    args: argparse.Namespace, name: str, backbone: Backbone, batch_size: int
) -> TrialConfig:
    """Paper defaults, with depths cut to a small backbone's layers."""
    method = trainers.get_method(name).Config()
    depth = min(backbone.dims.text_layers, backbone.dims.vision_layers)
    keys = [k for k in ("prompt_depth", "depth", "injection_depth") if hasattr(method, k)]
    method = dataclasses.replace(method, **{k: min(depth, getattr(method, k)) for k in keys})
    if hasattr(method, "num_prompts"):  # PMPO: one vision partition per prompt at least
        method = dataclasses.replace(method, num_prompts=min(method.num_prompts, depth))
    return TrialConfig(
        method=method,
        dataset=DataConfig(name=args.dataset, shots=args.shots, batch_size=batch_size),
        backbone=backbone_config(args),
        optim=OptimConfig(lr=0.002, warmup_epochs=0),
        train=TrainConfig(epochs=args.epochs, device=args.device),
    )


def with_train(cfg: TrialConfig, **changes: object) -> TrialConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))


def trial_seconds(cfg: TrialConfig, seeds: list[int], backbone: Backbone, task) -> float:
    """Wall time of one trial (every seed, every epoch), as `ablate search` runs it."""
    frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    _sync()
    start = time.perf_counter()
    for _ in trainers.fit_seeds(cfg, seeds, backbone, task, frozen=frozen):
        pass
    _sync()
    return time.perf_counter() - start


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def start(
    description: str | None, epochs: int, methods: str
) -> tuple[argparse.Namespace, Backbone, list[int]]:
    """The shared start of a per-method trial benchmark: its arguments, the loaded backbone, the
    seeds, and the header line saying what is measured."""
    parser = argparse.ArgumentParser(description=description)
    add_trial_arguments(parser, epochs=epochs, methods=methods)
    args = parser.parse_args()
    backbone = load(backbone_config(args), torch.device(args.device))
    print(
        f"{args.model} on {args.dataset}, {args.shots} shots, {args.epochs} epochs, "
        f"{args.seeds} seeds per trial, {args.device} ({torch.get_num_threads()} threads), "
        f"best of {args.repeats} alternating runs"
    )
    return args, backbone, list(range(1, args.seeds + 1))
