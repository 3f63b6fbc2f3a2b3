"""Trials per hour with a trial's seeds fused into one forward/backward pass per step, against
the seeds taking their steps one after another (both in one process, on one loaded backbone,
sharing the frozen features).

`train.fuse_seeds` stacks the seeds' batches: N seeds of batch B make one pass of N x B images,
each block with its own seed's prompts (`trainers/methods/stack.py`). The FLOPs are the same;
what changes is launches per step and how full each launch is, so the gain is largest where a
step is small (few-shot batches of 4-32 on a large device) and where Python overhead dominates.
Both variants run side by side in this process, alternating; the ratio is reported per method.

    python benchmarks/fused_seeds.py                                  # tiny_clip, tiny_mnist, CPU
    python benchmarks/fused_seeds.py --model ViT-B-16 --dataset digits --shots 2 --epochs 1
    python benchmarks/fused_seeds.py --model ViT-B-16 --device cuda --precision bf16   # GPU
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

# the papers' batch sizes (CoOp 32; MaPLe and its descendants 4; MoPE 32 as its reference code)
PAPER_BATCH = {"coop": 32, "maple": 4, "pmpo": 4, "mudpt": 4, "mpl": 4, "mope": 32}


def trial_seconds(cfg: TrialConfig, seeds: list[int], backbone, task) -> float:
    """Wall time of one trial (every seed, every epoch), as `ablate search` runs it."""
    frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in trainers.fit_seeds(cfg, seeds, backbone, task, frozen=frozen):
        pass
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def method_config(name: str, depth: int):
    """Paper defaults, with depths cut to a small backbone's layers."""
    config = trainers.get_method(name).Config()
    keys = [k for k in ("prompt_depth", "depth", "injection_depth") if hasattr(config, k)]
    config = dataclasses.replace(config, **{k: min(depth, getattr(config, k)) for k in keys})
    if hasattr(config, "num_prompts"):  # PMPO: one vision partition per prompt at least
        config = dataclasses.replace(config, num_prompts=min(config.num_prompts, depth))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ablate-tiny-clip")
    parser.add_argument("--pretrained", default="shipped", help="'none' for random weights")
    parser.add_argument("--dataset", default="tiny_mnist")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--methods", default="coop,maple,pmpo,mudpt,mpl,mope")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()

    pretrained = None if args.pretrained == "none" else args.pretrained
    if args.model != "ablate-tiny-clip" and args.pretrained == "shipped":
        pretrained = None
    device = torch.device(args.device)
    backbone_cfg = BackboneConfig(model=args.model, pretrained=pretrained, precision=args.precision)
    backbone = load(backbone_cfg, device)
    depth = min(backbone.dims.text_layers, backbone.dims.vision_layers)
    seeds = list(range(1, args.seeds + 1))
    where = args.device if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"{args.model} on {args.dataset}, {args.shots} shots, {args.epochs} epochs, "
        f"{args.seeds} seeds per trial, paper batch sizes, {where}, {args.precision}, "
        f"best of {args.repeats} alternating runs"
    )
    print("| method | batch | trial, seeds fused (s) | trial, seed by seed (s) | trials/hour |")
    print("|---|---|---|---|---|")
    for name in args.methods.split(","):
        data = DataConfig(name=args.dataset, shots=args.shots, batch_size=PAPER_BATCH[name])
        task = load_task(data)
        cfg = TrialConfig(
            method=method_config(name, depth),
            dataset=data,
            backbone=backbone_cfg,
            optim=OptimConfig(lr=0.002, warmup_epochs=0),
            train=TrainConfig(epochs=args.epochs, device=args.device),
        )
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for fuse in (True, False):
                run = dataclasses.replace(
                    cfg, train=dataclasses.replace(cfg.train, fuse_seeds=fuse)
                )
                times[fuse].append(trial_seconds(run, seeds, backbone, task))
        fused, apart = min(times[True]), min(times[False])
        print(f"| {name} | {data.batch_size} | {fused:.1f} | {apart:.1f} | {apart / fused:.2f}x |")


if __name__ == "__main__":
    main()
