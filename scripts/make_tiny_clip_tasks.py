"""Build the shipped base-to-new tasks of `ablate-tiny-clip` from its held-out images.

Each task takes one source's held-out images (never seen in pretraining, see `tiny_clip_data.py`)
and shifts them in a way no pretraining caption names, so zero-shot with a hand-written template
is partly right and prompt learning has something to learn. Deterministic (seed 0):

    python scripts/make_tiny_clip_tasks.py                 # writes trainers/data/tiny_clip/*.npz
    python scripts/make_tiny_clip_tasks.py --calibrate C   # zero-shot HM of every candidate shift
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_clip_data as data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "trainers" / "data" / "tiny_clip"


def pixelate(x: Tensor, size: int = 7) -> Tensor:
    small = F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="nearest")


def low_contrast(x: Tensor, keep: float = 0.25) -> Tensor:
    return 0.5 + (x - 0.5) * keep


def shrink(x: Tensor, size: int = 14) -> Tensor:
    """The object at half size in the middle of an empty frame."""
    small = F.interpolate(x, size=(size, size), mode="area")
    out = torch.zeros_like(x)
    a = (x.shape[-1] - size) // 2
    out[..., a : a + size, a : a + size] = small
    return out


def occlude(x: Tensor, gen: torch.Generator, size: int = 12) -> Tensor:
    """A grey square hides part of each image."""
    out = x.clone()
    for i in range(len(x)):
        r, c = (int(v) for v in torch.randint(0, x.shape[-1] - size + 1, (2,), generator=gen))
        out[i, :, r : r + size, c : c + size] = 0.5
    return out


Shift = Callable[[Tensor, torch.Generator], Tensor]
SHIFTS: dict[str, Shift] = {
    "none": lambda x, g: x,
    "pixelated": lambda x, g: pixelate(x),
    "pixelated5": lambda x, g: pixelate(x, 5),
    "low-contrast": lambda x, g: low_contrast(x),
    "inverted+blurry": lambda x, g: data.blur(1 - x, 1.5),
    "inverted+pixelated": lambda x, g: pixelate(1 - x),
    "blurry2": lambda x, g: data.blur(x, 2.0),
    "small": lambda x, g: shrink(x),
    "occluded": lambda x, g: occlude(x, g),
    "upside-down": lambda x, g: torch.flip(x, dims=(2,)),
    "inverted+small": lambda x, g: 1 - shrink(x),
}

# task name -> (source, shift, images per class in the train pool, val, test)
TASKS: dict[str, tuple[str, str, int, int, int]] = {
    "tiny_fashion": ("fashion", "upside-down", 80, 40, 130),
    "tiny_animals": ("animals", "pixelated", 80, 40, 180),
    "tiny_mnist": ("mnist", "blurry2", 50, 30, 70),
}


def build(source: data.Source, shift: str, sizes: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Held-out images per class -> shifted uint8 train pool / val / test arrays."""
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in ("train", "val", "test")}
    for c in range(len(source.classnames)):
        idx = rng.permutation(np.flatnonzero(source.held_out & (source.labels == c)))
        start = 0
        for split, n in zip(parts, sizes):
            parts[split].append(idx[start : start + n])
            start += n
    arrays: dict[str, np.ndarray] = {"classnames": np.array(source.classnames)}
    for split, chunks in parts.items():
        idx = np.sort(np.concatenate(chunks))
        x = torch.from_numpy(source.images[idx]).float()[:, None] / 255
        x = SHIFTS[shift](x, gen).clamp(0, 1)
        arrays[f"{split}_images"] = (x[:, 0] * 255).round().to(torch.uint8).numpy()
        arrays[f"{split}_labels"] = source.labels[idx].astype(np.int64)
    return arrays


def zero_shot_hm(arrays: dict[str, np.ndarray], name: str, template: str, backbone) -> tuple:
    """Zero-shot test base/new/HM of an in-memory task, through `trainers` itself."""
    import trainers
    from trainers.configs import DataConfig, TrainConfig, TrialConfig
    from trainers.data.datasets import Split, Task
    from trainers.methods.zeroshot import ZeroShotConfig

    def split(s: str) -> Split:
        x = torch.from_numpy(arrays[f"{s}_images"]).float()[:, None].expand(-1, 3, -1, -1) / 255
        return Split(x.contiguous(), torch.from_numpy(arrays[f"{s}_labels"]))

    task = Task(name, list(arrays["classnames"]), split("train"), split("val"), split("test"))
    cfg = TrialConfig(
        method=ZeroShotConfig(),
        dataset=DataConfig(name=name, template=template),
        train=TrainConfig(epochs=1, device="cpu"),
    )
    m = list(trainers.fit(cfg, backbone, task))[-1].metrics
    return m["test/base"], m["test/new"], m["test/hm"]


def calibrate(checkpoint: str) -> None:
    from trainers.backbone import load
    from trainers.configs import BackboneConfig

    backbone = load(BackboneConfig(model="ablate-tiny-clip", pretrained=checkpoint))
    for source in data.load_sources(["fashion", "animals", "mnist"]):
        template = f"a photo of {source.noun}."
        for shift in SHIFTS:
            base, new, hm = zero_shot_hm(
                build(source, shift, (10, 10, 100)), "x", template, backbone
            )
            print(f"{source.name:8s} {shift:20s} base {base:5.1f} new {new:5.1f} hm {hm:5.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--calibrate", metavar="CHECKPOINT", default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.calibrate:
        calibrate(args.calibrate)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (source_name, shift, *sizes) in TASKS.items():
        arrays = build(data.load_sources([source_name])[0], shift, tuple(sizes))
        path = args.out / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        counts = {s: len(arrays[f"{s}_labels"]) for s in ("train", "val", "test")}
        print(
            f"{path.relative_to(REPO)}: {source_name} / {shift}, {counts}, "
            f"{path.stat().st_size / 1e6:.2f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
