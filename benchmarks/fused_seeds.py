"""Trials per hour with a trial's seeds fused into one forward/backward pass per step, against
the seeds taking their steps one after another (both in one process, on one loaded backbone,
sharing the frozen features), and optionally against one process per seed.

`train.fuse_seeds` stacks the seeds' batches: N seeds of batch B make one pass of N x B images,
each block with its own seed's prompts (`trainers/methods/stack.py`). The FLOPs are the same;
what changes is launches per step and how full each launch is, so the gain is largest where a
step is small (few-shot batches of 4-32 on a large device) and where Python overhead dominates.
Fused and seed-by-seed run side by side in this process, alternating; the ratio is per method.
`--processes` adds the setup without any sharing: one process per seed, each importing torch,
loading the backbone and the data and training its seed alone; its time is the sum of those
processes' wall times, as if they ran one after another on the device.

    python benchmarks/fused_seeds.py                                  # tiny_clip, tiny_mnist, CPU
    python benchmarks/fused_seeds.py --model ViT-B-16 --dataset digits --shots 2 --epochs 1
    python benchmarks/fused_seeds.py --model ViT-B-16 --device cuda --precision bf16 --processes
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time

import torch

import trainers
from trainers.backbone import Backbone, load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig, TrainConfig, TrialConfig
from trainers.data import load_task
from trainers.frozen import FrozenFeatures

# the papers' batch sizes (CoOp 32; MaPLe and its descendants 4; MoPE 32 as its reference code)
PAPER_BATCH = {"coop": 32, "maple": 4, "pmpo": 4, "mudpt": 4, "mpl": 4, "mope": 32}


def trial_seconds(cfg: TrialConfig, seeds: list[int], backbone: Backbone, task) -> float:
    """Wall time of one trial (every seed, every epoch), as `ablate search` runs it."""
    frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    _sync()
    start = time.perf_counter()
    for _ in trainers.fit_seeds(cfg, seeds, backbone, task, frozen=frozen):
        pass
    _sync()
    return time.perf_counter() - start


def one_process_seconds(args: argparse.Namespace, method: str, seed: int) -> float:
    """Wall time of a fresh process that loads everything and trains one seed of `method`."""
    command = [sys.executable, __file__, "--alone", method, "--seeds", str(seed)]
    for flag in ("model", "pretrained", "dataset", "shots", "epochs", "device", "precision"):
        command += [f"--{flag}", str(getattr(args, flag))]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def trial_config(args: argparse.Namespace, name: str, backbone: Backbone) -> TrialConfig:
    """Paper defaults and batch size, depths cut to a small backbone's layers."""
    method = trainers.get_method(name).Config()
    depth = min(backbone.dims.text_layers, backbone.dims.vision_layers)
    keys = [k for k in ("prompt_depth", "depth", "injection_depth") if hasattr(method, k)]
    method = dataclasses.replace(method, **{k: min(depth, getattr(method, k)) for k in keys})
    if hasattr(method, "num_prompts"):  # PMPO: one vision partition per prompt at least
        method = dataclasses.replace(method, num_prompts=min(method.num_prompts, depth))
    return TrialConfig(
        method=method,
        dataset=DataConfig(name=args.dataset, shots=args.shots, batch_size=PAPER_BATCH[name]),
        backbone=backbone_config(args),
        optim=OptimConfig(lr=0.002, warmup_epochs=0),
        train=TrainConfig(epochs=args.epochs, device=args.device),
    )


def backbone_config(args: argparse.Namespace) -> BackboneConfig:
    pretrained = None if args.pretrained == "none" else args.pretrained
    if args.model != "ablate-tiny-clip" and args.pretrained == "shipped":
        pretrained = None
    return BackboneConfig(model=args.model, pretrained=pretrained, precision=args.precision)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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
    parser.add_argument("--processes", action="store_true", help="add one process per seed")
    parser.add_argument("--alone", help=argparse.SUPPRESS)  # internal: train seed --seeds alone
    args = parser.parse_args()

    device = torch.device(args.device)
    backbone = load(backbone_config(args), device)
    if args.alone:  # a process of its own for one seed: the load above is part of its time
        cfg = trial_config(args, args.alone, backbone)
        trial_seconds(cfg, [args.seeds], backbone, load_task(cfg.dataset))
        return
    seeds = list(range(1, args.seeds + 1))
    where = args.device if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"{args.model} on {args.dataset}, {args.shots} shots, {args.epochs} epochs, "
        f"{args.seeds} seeds per trial, paper batch sizes, {where}, {args.precision}, "
        f"best of {args.repeats} alternating runs"
    )
    header = "| method | batch | seeds fused (s) | seed by seed (s) | trials/hour |"
    if args.processes:
        header += " one process per seed (s) | trials/hour |"
    print(header)
    print("|---" * header.count(" | ") + "|---|")
    for name in args.methods.split(","):
        cfg = trial_config(args, name, backbone)
        task = load_task(cfg.dataset)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for fuse in (True, False):
                train = dataclasses.replace(cfg.train, fuse_seeds=fuse)
                times[fuse].append(
                    trial_seconds(dataclasses.replace(cfg, train=train), seeds, backbone, task)
                )
        fused, apart = min(times[True]), min(times[False])
        row = f"| {name} | {cfg.dataset.batch_size} | {fused:.1f} | {apart:.1f} | "
        row += f"{apart / fused:.2f}x |"
        if args.processes:
            alone = sum(one_process_seconds(args, name, seed) for seed in seeds)
            row += f" {alone:.1f} | {alone / fused:.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
