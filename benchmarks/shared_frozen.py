"""Trials per hour with the seeds of a trial sharing their frozen features, against without.

One trial = every seed of one configuration trained in lockstep against one loaded backbone
(what `ablate search` runs). With `train.cache_frozen` (the default) the prompt-free features
(CoOp's and zero-shot's image side, MoPE's conditioning feature and frozen text branch) are
computed once for all seeds and epochs; without it every seed recomputes them every step. Both
variants run side by side in this process, alternating, and the ratio is reported per method.

    python benchmarks/shared_frozen.py                                  # tiny_clip on tiny_mnist
    python benchmarks/shared_frozen.py --model ViT-B-16 --dataset digits --shots 2 --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

import trainers
from trainers.backbone import load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig, TrainConfig, TrialConfig
from trainers.data import load_task
from trainers.frozen import FrozenFeatures


def trial_seconds(cfg: TrialConfig, seeds: list[int], backbone, task, cache: bool) -> float:
    """Wall time of one trial: every seed, every epoch, in lockstep (as ablate.trial does)."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, cache_frozen=cache))
    frozen = FrozenFeatures(enabled=cache)
    start = time.perf_counter()
    runs = [trainers.fit(cfg.with_seed(s), backbone, task, frozen=frozen) for s in seeds]
    for _ in zip(*runs):
        pass
    return time.perf_counter() - start


def method_config(name: str, depth: int):
    config = trainers.get_method(name).Config()
    keys = [k for k in ("prompt_depth", "depth", "injection_depth") if hasattr(config, k)]
    return dataclasses.replace(config, **{k: min(depth, getattr(config, k)) for k in keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ablate-tiny-clip")
    parser.add_argument("--pretrained", default="shipped", help="'none' for random weights")
    parser.add_argument("--dataset", default="tiny_mnist")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--methods", default="coop,mope,zeroshot,maple")
    args = parser.parse_args()

    pretrained = None if args.pretrained == "none" else args.pretrained
    if args.model != "ablate-tiny-clip" and args.pretrained == "shipped":
        pretrained = None
    backbone = load(BackboneConfig(model=args.model, pretrained=pretrained), torch.device("cpu"))
    data = DataConfig(name=args.dataset, shots=args.shots, batch_size=16)
    task = load_task(data)
    depth = min(backbone.dims.text_layers, backbone.dims.vision_layers)
    seeds = list(range(1, args.seeds + 1))
    print(
        f"{args.model} on {args.dataset}, {args.shots} shots, {args.epochs} epochs, "
        f"{args.seeds} seeds per trial, CPU ({torch.get_num_threads()} threads), "
        f"best of {args.repeats} alternating runs"
    )
    print("| method | trial, shared frozen (s) | trial, recomputed (s) | trials/hour ratio |")
    print("|---|---|---|---|")
    for name in args.methods.split(","):
        cfg = TrialConfig(
            method=method_config(name, depth),
            dataset=data,
            backbone=BackboneConfig(model=args.model, pretrained=pretrained),
            optim=OptimConfig(lr=0.05, warmup_epochs=0),
            train=TrainConfig(epochs=args.epochs, device="cpu"),
        )
        shared, alone = [], []
        for _ in range(args.repeats):
            shared.append(trial_seconds(cfg, seeds, backbone, task, cache=True))
            alone.append(trial_seconds(cfg, seeds, backbone, task, cache=False))
        fast, slow = min(shared), min(alone)
        print(f"| {name} | {fast:.1f} | {slow:.1f} | {slow / fast:.2f}x |")


if __name__ == "__main__":
    main()
