"""The laptop-scale CLIP benchmark: zero-shot, CoOp and MaPLe on the tiny_* base-to-new tasks.

The pretrained `ablate-tiny-clip` (shipped weights), 16 shots per base class, seeds 1-3; prints
base / new / HM on each task's test split as mean +- std over seeds, the way the papers' tables
do. About 5 minutes on 2 CPU cores:

    python benchmarks/tiny_clip_benchmark.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import trainers
from trainers.backbone import load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig, TrainConfig, TrialConfig
from trainers.data import load_task
from trainers.data.tiny_tasks import PRESETS
from trainers.methods.coop import CoOpConfig
from trainers.methods.maple import MaPLeConfig
from trainers.methods.zeroshot import ZeroShotConfig

BACKBONE = BackboneConfig(model="ablate-tiny-clip", pretrained="shipped")

# method -> (its config, optimiser, epochs): one fixed recipe per method for every task
RECIPES = {
    "zeroshot": (ZeroShotConfig(), OptimConfig(), 1),
    "coop": (CoOpConfig(prompt_length=4), OptimConfig(lr=0.1, warmup_epochs=1), 20),
    "maple": (
        MaPLeConfig(prompt_length=2, prompt_depth=3),
        OptimConfig(lr=0.1, warmup_epochs=1),
        20,
    ),
}
NAMES = {"zeroshot": "Zero-shot CLIP", "coop": "CoOp", "maple": "MaPLe"}


def run(task_name: str, method: str, seed: int, shots: int, backbone, task) -> dict[str, float]:
    """One training run; its final test base / new / HM (%)."""
    method_cfg, optim, epochs = RECIPES[method]
    cfg = TrialConfig(
        method=method_cfg,
        dataset=DataConfig(
            name=task_name, template=PRESETS[task_name]["template"], shots=shots, batch_size=16
        ),
        backbone=BACKBONE,
        optim=optim,
        train=TrainConfig(epochs=epochs, device="cpu"),
        seed=seed,
    )
    metrics = list(trainers.fit(cfg, backbone, task))[-1].metrics
    return {k: metrics[f"test/{k}"] for k in ("base", "new", "hm")}


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} ± {std:3.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(PRESETS))
    p.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    backbone = load(BACKBONE)
    print(f"ablate-tiny-clip, {args.shots} shots, seeds {args.seeds}; test split, mean ± std\n")
    header = f"| {'method':14s} | {'base':11s} | {'new':11s} | {'HM':11s} |"
    for task_name in args.tasks:
        task = load_task(DataConfig(name=task_name))
        print(f"### {task_name}  (base: {', '.join(task.names(task.base_classes))})\n")
        print(header + "\n|" + "---|" * 4)
        for method in args.methods:
            runs = [run(task_name, method, s, args.shots, backbone, task) for s in args.seeds]
            cells = " | ".join(cell([r[k] for r in runs]) for k in ("base", "new", "hm"))
            print(f"| {NAMES[method]:14s} | {cells} |", flush=True)
        print()
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
