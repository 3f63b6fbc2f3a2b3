"""Trials per hour with the seeds of a trial sharing their frozen features, against without.

One trial = every seed of one configuration trained together against one loaded backbone
(what `ablate search` runs). With `train.cache_frozen` (the default) the prompt-free features
(CoOp's and zero-shot's image side, MoPE's conditioning feature and frozen text branch) are
computed once for all seeds and epochs; without it every seed recomputes them every step. Both
variants run side by side in this process, alternating, and the ratio is reported per method.

    python benchmarks/shared_frozen.py                                  # tiny_clip on tiny_mnist
    python benchmarks/shared_frozen.py --model ViT-B-16 --dataset digits --shots 2 --epochs 2
"""

from __future__ import annotations

from common import start, trial_config, trial_seconds, with_train

from trainers.data import load_task


def main() -> None:
    args, backbone, seeds = start(__doc__, epochs=5, methods="coop,mope,zeroshot,maple")
    print("| method | trial, shared frozen (s) | trial, recomputed (s) | trials/hour ratio |")
    print("|---|---|---|---|")
    for name in args.methods.split(","):
        cfg = trial_config(args, name, backbone, batch_size=16)
        task = load_task(cfg.dataset)
        shared, alone = [], []
        for _ in range(args.repeats):
            shared.append(trial_seconds(with_train(cfg, cache_frozen=True), seeds, backbone, task))
            alone.append(trial_seconds(with_train(cfg, cache_frozen=False), seeds, backbone, task))
        fast, slow = min(shared), min(alone)
        print(f"| {name} | {fast:.1f} | {slow:.1f} | {slow / fast:.2f}x |")


if __name__ == "__main__":
    main()
