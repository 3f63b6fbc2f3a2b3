"""Trainer throughput per method at paper defaults: images/s of a training step (forward,
backward to the prompts, SGD step) and the process's peak resident memory, on CPU here (use a
GPU machine for absolute figures). Each method runs in its own process so peaks don't mix.

    python benchmarks/throughput.py                       # ViT-B/16 shapes, random weights
    python benchmarks/throughput.py --model ablate-tiny-clip --batch 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CLASSES = [f"class {i}" for i in range(10)]


def one(method: str, model: str, batch: int, steps: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    import trainers
    from trainers.backbone import load
    from trainers.configs import BackboneConfig
    from trainers.loop import word_embedder
    from trainers.prompted_clip import PromptedCLIP

    torch.manual_seed(0)
    backbone = load(BackboneConfig(model=model, pretrained=None))
    cls = trainers.get_method(method)
    cfg = cls.Config()
    if cfg.check(backbone.dims):  # paper depths beyond a small model: shrink to fit
        cfg = _fit(cfg, backbone.dims)
    prompts = cls(cfg, backbone.dims, word_embedder(backbone, torch.device("cpu")))
    model_ = PromptedCLIP(backbone, prompts, "a photo of a {}.")
    params = list(prompts.parameters())
    opt = torch.optim.SGD(params, lr=1e-3) if params else None
    size = backbone.dims.image_size
    images = torch.randn(batch, 3, size, size)
    labels = torch.arange(batch) % len(CLASSES)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        logits, _ = model_(images, CLASSES)
        if opt is not None:
            opt.zero_grad()
            F.cross_entropy(logits, labels).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    step = sum(times[1:]) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"images_per_s": batch / step, "step_s": step, "peak_rss_mib": peak,
            "trainable": sum(p.numel() for p in params)}  # fmt: skip


def _fit(cfg, dims):
    import dataclasses

    depth = min(dims.text_layers, dims.vision_layers)
    changes = {k: depth for k in ("prompt_depth", "depth", "injection_depth") if hasattr(cfg, k)}
    return dataclasses.replace(cfg, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.model, args.batch, args.steps)))
        return
    import trainers

    print(f"{args.model}, batch {args.batch}, {args.steps} timed steps, 10 classes, CPU")
    print("| method | trainable params | images/s | step (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for name in trainers.list_methods():
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--model", args.model,
             "--batch", str(args.batch), "--steps", str(args.steps)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['trainable']:,} | {r['images_per_s']:.1f} | {r['step_s']:.2f} | "
              f"{r['peak_rss_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
