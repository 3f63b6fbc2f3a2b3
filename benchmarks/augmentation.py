"""What training-image augmentation (`dataset.augment=crop_flip`) costs per trial.

One trial = every seed of one configuration trained together against one loaded backbone (as
`ablate search` runs it), once with the training images as stored and once with a fresh random
resized crop and flip every step (CoOp's, MaPLe's and MPL's training transform). Augmented
views are new every step, so their image features cannot come from the shared frozen cache:
CoOp's image side, cached otherwise, is recomputed every step; methods that prompt the vision
tower recompute it anyway and pay only for the crops. Both variants run side by side in this
process, alternating, and the ratio is reported per method, in wall time and in this process's
CPU time (the steadier of the two on a shared machine; with one thread they agree when idle).
zeroshot trains nothing: its row is the control, any ratio but 1.00x there is noise.

    python benchmarks/augmentation.py                                  # tiny_clip on tiny_mnist
    python benchmarks/augmentation.py --model ViT-B-16 --dataset digits --shots 2 --epochs 2
"""

from __future__ import annotations

import dataclasses
import time

import torch
from common import start, trial_config

from trainers.configs import TrialConfig
from trainers.data import load_task
from trainers.frozen import FrozenFeatures
from trainers.train import fit_seeds


def with_augment(cfg: TrialConfig, augment: str) -> TrialConfig:
    return dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, augment=augment))


def seconds(cfg: TrialConfig, seeds: list[int], backbone, task) -> tuple[float, float]:
    """(wall, CPU) seconds of one trial, every seed and epoch, as `ablate search` runs it."""
    frozen = FrozenFeatures(enabled=cfg.train.cache_frozen)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in fit_seeds(cfg, seeds, backbone, task, frozen=frozen):
        pass
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args, backbone, seeds = start(__doc__, epochs=5, methods="coop,zeroshot,maple,mope")
    print("| method | none: wall (CPU) s | crop_flip: wall (CPU) s | cost, wall | cost, CPU |")
    print("|---|---|---|---|---|")
    for name in args.methods.split(","):
        cfg = trial_config(args, name, backbone, batch_size=16)
        task = load_task(cfg.dataset)
        plain, augmented = [], []
        for _ in range(args.repeats):
            plain.append(seconds(with_augment(cfg, "none"), seeds, backbone, task))
            augmented.append(seconds(with_augment(cfg, "crop_flip"), seeds, backbone, task))
        (wall, cpu), (wall_aug, cpu_aug) = _best(plain), _best(augmented)
        print(
            f"| {name} | {wall:.1f} ({cpu:.1f}) | {wall_aug:.1f} ({cpu_aug:.1f}) | "
            f"{wall_aug / wall:.2f}x | {cpu_aug / cpu:.2f}x |"
        )


def _best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(w for w, _ in runs), min(c for _, c in runs)


if __name__ == "__main__":
    main()
