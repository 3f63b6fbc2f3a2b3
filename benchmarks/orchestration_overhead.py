"""Orchestration and logging overhead, measured side by side in one run.

1. The same 4 trials (CoOp on tiny_mnist with tiny_clip, one seed, 3 epochs, a grid of learning
   rates, no early stopping) through `ablate search` and through a bare `ray.tune.Tuner` whose
   trainable only calls `trainers.fit` and `tune.report`, with Ray's default of a fresh worker
   per trial and with `reuse_actors=True` (which ablate sets): the ratios are what ablate's
   validation, searcher wrapper, checkpoints, MLflow runs and Parquet parts cost on top of Tune.
2. One trial body without Ray, after a warm-up, best of 3 alternating: `trainers.fit` alone vs
   `ablate.trial.run` (MLflow on SQLite + Parquet): the logging share of a trial's time.

    python benchmarks/orchestration_overhead.py              # 3 epochs per trial
    python benchmarks/orchestration_overhead.py --epochs 30  # longer trials
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

LRS = [0.01, 0.03, 0.1, 0.3]
STUDY = """\
name: overhead
method: coop
base: {dataset: tiny_mnist, backbone: tiny_clip, train.epochs: EPOCHS, optim.warmup_epochs: 0}
parameters: {optim.lr: {values: [0.01, 0.03, 0.1, 0.3]}}
seeds: [1]
search: {algorithm: grid, max_concurrent: 2}
scheduler: {type: none}
"""


EPOCHS = 3


def bare_tuner(folder: Path, reuse: bool) -> float:
    from ray import tune

    from ablate import config

    def trainable(params: dict) -> None:
        import trainers

        cfg = config.compose(["dataset=tiny_mnist", "backbone=tiny_clip", f"train.epochs={EPOCHS}",
                              "optim.warmup_epochs=0", f"optim.lr={params['lr']}"])  # fmt: skip
        for m in trainers.fit(cfg):
            tune.report(m.metrics)

    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"lr": tune.grid_search(LRS)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=str(folder / f"bare{reuse}"), verbose=0),
    ).fit()
    return time.perf_counter() - start


def ablate_search(folder: Path) -> float:
    from ablate.cli import main

    (folder / "study.yaml").write_text(STUDY.replace("EPOCHS", str(EPOCHS)))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        start = time.perf_counter()
        assert main(["search", "study.yaml"]) == 0
        return time.perf_counter() - start
    finally:
        os.chdir(cwd)


def logging_share(folder: Path) -> tuple[float, float]:
    import trainers
    from ablate import config, spec
    from ablate.search import trial_body as trial
    from ablate.tracking import Tracker

    cfg = config.compose(["dataset=tiny_mnist", "backbone=tiny_clip", f"train.epochs={EPOCHS}"])
    study_text = STUDY.replace("EPOCHS", str(EPOCHS))
    (folder / "s.yaml").write_text(study_text.replace("name: overhead", "name: share"))
    study = spec.load(folder / "s.yaml")
    tracker = Tracker(f"sqlite:///{folder / 'share.db'}").start_study("share", "", {}, {})
    backbone, task, _ = trial.shared_inputs(cfg)  # both variants start with them loaded

    def plain() -> None:
        list(trainers.fit(cfg, backbone, task))

    def logged(number: int) -> None:
        ctx = trial.TrialContext(f"x{number}", f"t{number:03d}", folder / "share", tracker)
        trial.run(study, {"optim.lr": 0.002 + number * 1e-4}, lambda metrics, state: None, ctx)

    plain(), logged(0)  # warm-up: imports, the MLflow store, the frozen features
    times: dict[str, list[float]] = {"plain": [], "logged": []}
    for number in range(1, 4):
        start = time.perf_counter()
        plain()
        times["plain"].append(time.perf_counter() - start)
        start = time.perf_counter()
        logged(number)
        times["logged"].append(time.perf_counter() - start)
    return min(times["plain"]), min(times["logged"])


def main() -> None:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per trial")
    EPOCHS = parser.parse_args().epochs
    from ablate.search.tuning import connect

    connect(None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = bare_tuner(folder, reuse=False)
        reused = bare_tuner(folder, reuse=True)
        ours = ablate_search(folder)
        plain, logged = logging_share(folder)
    print(f"4 trials x {EPOCHS} epochs, 2 at a time: bare Tuner {bare:.1f} s, bare Tuner reusing "
          f"workers {reused:.1f} s, ablate search {ours:.1f} s; ratios {ours / bare:.2f} and "
          f"{ours / reused:.2f}")  # fmt: skip
    print(
        f"one trial without Ray: fit {plain:.2f} s, with MLflow + Parquet {logged:.2f} s, "
        f"logging share {(logged - plain) / logged:.0%}"
    )


if __name__ == "__main__":
    main()
