"""Share of a trial's time spent loading images: first trial (JPEGs decoded) vs a later one (the
decoded, resized images read back from the disk cache, trainers/data/images.py).

A CoOp-layout dataset (`dtd`'s layout) is generated in a temporary folder: `--classes` classes
of photo-sized JPEGs (`--width` x `--height`), `--train` / `--val` / `--test` images per class.
One trial = `fit` of `--method` for `--epochs` epochs with `--shots` shots (base-to-new: few-shot
base classes, val every epoch, the whole test split at the end), as a study's trial runs it.
Loading = time inside `ImageFiles.load` (decode + resize + cache write, or cache read) plus
reading the split file; the backbone is loaded once, outside the timings.

    python benchmarks/data_loading.py                              # tiny backbone, CPU
    python benchmarks/data_loading.py --model ViT-B-16 --device cuda   # the papers' shapes
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def make_dataset(root: Path, args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    folder = root / "dtd"
    rng = np.random.default_rng(0)
    split: dict[str, list] = {}
    for name in ("train", "val", "test"):
        split[name] = []
        for label in range(args.classes):
            for i in range(getattr(args, name)):
                rel = f"class_{label}/{name}_{i}.jpg"
                (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                base = np.linspace(0, 255, args.width)[None, :, None] * rng.random(3)
                noise = rng.normal(0, 25, (args.height, args.width, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / "images" / rel, quality=90)
                split[name].append([rel, label, f"class {label}"])
    (folder / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    return sum(len(v) for v in split.values())


def trial(args: argparse.Namespace, root: Path, backbone: object) -> dict[str, float]:
    import trainers
    from trainers import TrainConfig, TrialConfig, fit
    from trainers.configs import DataConfig
    from trainers.data import load_task
    from trainers.data.images import ImageFiles

    spent = {"load": 0.0, "images": 0}
    original = ImageFiles.load

    def timed(self: ImageFiles, paths: list[str]):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original(self, paths)
        finally:
            spent["load"] += time.perf_counter() - start
            spent["images"] += len(paths)

    ImageFiles.load = timed  # type: ignore[method-assign]
    try:
        data = DataConfig(name="dtd", root=str(root), shots=args.shots, eval_batch_size=64)
        cfg = TrialConfig(
            method=trainers.get_method(args.method).Config(),
            dataset=data,
            train=TrainConfig(epochs=args.epochs, device=args.device),
        )
        start = time.perf_counter()
        task = load_task(data)
        listing = time.perf_counter() - start
        for _ in fit(cfg, backbone=backbone, task=task):  # type: ignore[arg-type]
            pass
        total = time.perf_counter() - start
    finally:
        ImageFiles.load = original  # type: ignore[method-assign]
    loading = spent["load"] + listing
    return {
        "total_s": total,
        "loading_s": loading,
        "share": loading / total,
        "images_loaded": spent["images"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ablate-tiny-clip")
    parser.add_argument("--method", default="coop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["ABLATE_CACHE_DIR"] = str(root / "cache")
        import torch

        from trainers.backbone import load
        from trainers.configs import BackboneConfig

        files = make_dataset(root, args)
        backbone = load(
            BackboneConfig(model=args.model, pretrained=None), torch.device(args.device)
        )
        cold = trial(args, root, backbone)  # decodes every image it touches, fills the cache
        warm = trial(args, root, backbone)  # a second trial of the study: reads the cache
        cache_mb = sum(f.stat().st_size for f in (root / "cache").rglob("*.npy")) / 2**20
    print(
        json.dumps(
            {
                "model": args.model,
                "method": args.method,
                "device": args.device,
                "files": files,
                "epochs": args.epochs,
                "shots": args.shots,
                "cache_mb": round(cache_mb, 1),
                "first_trial": {k: round(v, 3) for k, v in cold.items()},
                "later_trial": {k: round(v, 3) for k, v in warm.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
