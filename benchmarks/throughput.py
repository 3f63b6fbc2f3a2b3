"""Trainer throughput per method at paper defaults: images/s of a training step (forward,
backward to the prompts, SGD step), peak memory, and the step's FLOPs as counted by PyTorch
(forward + backward to the inputs: the frozen weights get no gradient). On a GPU (bf16 autocast,
as trials run) it also reports the fraction of the device's FLOP limit the step reaches: counted
FLOPs / (step time x peak FLOP/s). Each method runs in its own process so peaks don't mix.

    python benchmarks/throughput.py                       # ViT-B/16 shapes, random weights
    python benchmarks/throughput.py --model ablate-tiny-clip --batch 32
    python benchmarks/throughput.py --device cuda --batch 128 --steps 10   # GPU figures
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CLASSES = [f"class {i}" for i in range(10)]


# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device name
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def one(method: str, model: str, batch: int, steps: int, device: str) -> dict[str, float]:
    import contextlib

    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    import trainers
    from trainers.backbone import load
    from trainers.configs import BackboneConfig
    from trainers.engine import word_embedder
    from trainers.prompted_clip import PromptedCLIP

    torch.manual_seed(0)
    dev = torch.device(device)
    backbone = load(BackboneConfig(model=model, pretrained=None), dev)
    cls = trainers.get_method(method)
    cfg = cls.Config()
    if cfg.check(backbone.dims):  # paper depths beyond a small model: shrink to fit
        cfg = _fit(cfg, backbone.dims)
    prompts = cls(cfg, backbone.dims, word_embedder(backbone, dev))
    model_ = PromptedCLIP(backbone, prompts, "a photo of a {}.").to(dev)
    params = list(prompts.parameters())
    opt = torch.optim.SGD(params, lr=1e-3) if params else None
    size = backbone.dims.image_size
    images = torch.randn(batch, 3, size, size, device=dev)
    labels = torch.arange(batch, device=dev) % len(CLASSES)
    cuda = dev.type == "cuda"
    autocast = torch.autocast("cuda", torch.bfloat16) if cuda else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            logits, _ = model_(images, CLASSES)
        if opt is not None:
            opt.zero_grad()
            F.cross_entropy(logits.float(), labels).backward()
            opt.step()

    step()  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    flops = counter.get_total_flops()
    out = {"images_per_s": batch / seconds, "step_s": seconds, "gflop_per_step": flops / 1e9,
           "trainable": sum(p.numel() for p in params)}  # fmt: skip
    if cuda:
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        peak = peak_tflops(torch.cuda.get_device_name())
        out["limit_fraction"] = flops / seconds / (peak * 1e12) if peak else float("nan")
    else:
        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # RSS
    return out


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
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.model, args.batch, args.steps, args.device)))
        return
    import trainers

    memory = "peak GPU memory (MiB)" if args.device.startswith("cuda") else "peak RSS (MiB)"
    print(f"{args.model}, batch {args.batch}, {args.steps} timed steps, 10 classes, {args.device}")
    print(f"| method | trainable params | images/s | step (s) | GFLOP/step | {memory} | "
          "of FLOP limit |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for name in trainers.list_methods():
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--model", args.model, "--batch",
             str(args.batch), "--steps", str(args.steps), "--device", args.device],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        fraction = f"{r['limit_fraction']:.0%}" if "limit_fraction" in r else "n/a (CPU)"
        print(f"| {name} | {r['trainable']:,} | {r['images_per_s']:.1f} | {r['step_s']:.2f} | "
              f"{r['gflop_per_step']:.1f} | {r['peak_mib']:.0f} | {fraction} |")  # fmt: skip


if __name__ == "__main__":
    main()
