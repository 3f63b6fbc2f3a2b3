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
import subprocess
import sys
import time

import torch
from common import add_trial_arguments, backbone_config, trial_config, trial_seconds, with_train

from trainers.backbone import load
from trainers.data import load_task

# the papers' batch sizes (CoOp 32; MaPLe and its descendants 4; MoPE 32 as its reference code)
PAPER_BATCH = {"coop": 32, "maple": 4, "pmpo": 4, "mudpt": 4, "mpl": 4, "mope": 32}


def one_process_seconds(args: argparse.Namespace, method: str, seed: int) -> float:
    """Wall time of a fresh process that loads everything and trains one seed of `method`."""
    command = [sys.executable, __file__, "--alone", method, "--seeds", str(seed)]
    for flag in ("model", "pretrained", "dataset", "shots", "epochs", "device", "precision"):
        command += [f"--{flag}", str(getattr(args, flag))]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_trial_arguments(parser, epochs=3, methods="coop,maple,pmpo,mudpt,mpl,mope")
    parser.add_argument("--processes", action="store_true", help="add one process per seed")
    parser.add_argument("--alone", help=argparse.SUPPRESS)  # internal: train seed --seeds alone
    args = parser.parse_args()

    device = torch.device(args.device)
    backbone = load(backbone_config(args), device)
    if args.alone:  # a process of its own for one seed: the load above is part of its time
        cfg = trial_config(args, args.alone, backbone, PAPER_BATCH[args.alone])
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
        cfg = trial_config(args, name, backbone, PAPER_BATCH[name])
        task = load_task(cfg.dataset)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for fuse in (True, False):
                run = with_train(cfg, fuse_seeds=fuse)
                times[fuse].append(trial_seconds(run, seeds, backbone, task))
        fused, apart = min(times[True]), min(times[False])
        row = f"| {name} | {cfg.dataset.batch_size} | {fused:.1f} | {apart:.1f} | "
        row += f"{apart / fused:.2f}x |"
        if args.processes:
            alone = sum(one_process_seconds(args, name, seed) for seed in seeds)
            row += f" {alone:.1f} | {alone / fused:.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
