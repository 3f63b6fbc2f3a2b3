"""The laptop-scale CLIP benchmark: every registered method on the tiny_* base-to-new tasks.

The pretrained `ablate-tiny-clip` (shipped weights), 16 shots per base class, seeds 1-3 (trained
together, fused); each method at its default configuration (its authors' setting, depths scaled
to tiny_clip's 4 layers) under one shared optimiser recipe; prints base / new / HM on each task's
test split as mean +- std over seeds, the way the papers' tables do. About 25 minutes on 2 CPU
cores:

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

BACKBONE = BackboneConfig(model="ablate-tiny-clip", pretrained="shipped")
OPTIM = OptimConfig(lr=0.1, warmup_epochs=1)  # one recipe for every method and task
EPOCHS = 20
NAMES = {
    "zeroshot": "Zero-shot CLIP",
    "coop": "CoOp",
    "maple": "MaPLe",
    "mpl": "MPL",
    "mudpt": "MuDPT",
    "pmpo": "PMPO",
    "mope": "MoPE",
}


def run(task_name: str, method: str, seeds: list[int], shots: int, backbone, task) -> list:
    """Every seed of one method's training; their final test base / new / HM (%)."""
    cfg = TrialConfig(
        method=trainers.get_method(method).Config(),
        dataset=DataConfig(
            name=task_name, template=PRESETS[task_name]["template"], shots=shots, batch_size=16
        ),
        backbone=BACKBONE,
        optim=OPTIM,
        train=TrainConfig(epochs=1 if method == "zeroshot" else EPOCHS, device="cpu"),
    )
    per_seed = list(trainers.fit_seeds(cfg, seeds, backbone, task))[-1]
    return [{k: m.metrics[f"test/{k}"] for k in ("base", "new", "hm")} for m in per_seed]


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} ± {std:3.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(PRESETS))
    p.add_argument("--methods", nargs="+", default=list(NAMES), choices=list(NAMES))
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
            runs = run(task_name, method, args.seeds, args.shots, backbone, task)
            cells = " | ".join(cell([r[k] for r in runs]) for k in ("base", "new", "hm"))
            print(f"| {NAMES[method]:14s} | {cells} |", flush=True)
        print()
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
