"""Orchestration and logging overhead, measured side by side in one run.

1. The same 4 trials (CoOp on tiny_mnist with tiny_clip, one seed, 3 epochs, a grid of learning
   rates, no early stopping) through `ablate search` and through a bare `ray.tune.Tuner` whose
   trainable only calls `trainers.fit` and `tune.report`: the ratio is what ablate's searcher
   wrapper, checkpoints, MLflow runs and Parquet parts cost on top of Ray Tune.
2. One trial body without Ray: `trainers.fit` alone vs `ablate.trial.run` (MLflow on SQLite +
   Parquet): the logging share of a trial's time.

    python benchmarks/orchestration_overhead.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

LRS = [0.01, 0.03, 0.1, 0.3]
STUDY = """\
name: overhead
method: coop
base: {dataset: tiny_mnist, backbone: tiny_clip, train.epochs: 3, optim.warmup_epochs: 0}
parameters: {optim.lr: {values: [0.01, 0.03, 0.1, 0.3]}}
seeds: [1]
search: {algorithm: grid, max_concurrent: 2}
scheduler: {type: none}
"""


def bare_tuner(folder: Path) -> float:
    from ray import tune

    from ablate import config

    def trainable(params: dict) -> None:
        import trainers

        cfg = config.compose(["dataset=tiny_mnist", "backbone=tiny_clip", "train.epochs=3",
                              "optim.warmup_epochs=0", f"optim.lr={params['lr']}"])  # fmt: skip
        for m in trainers.fit(cfg):
            tune.report(m.metrics)

    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"lr": tune.grid_search(LRS)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(folder / "bare"), verbose=0),
    ).fit()
    return time.perf_counter() - start


def ablate_search(folder: Path) -> float:
    from ablate.cli import main

    (folder / "study.yaml").write_text(STUDY)
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
    from ablate import config, spec, trial
    from ablate.tracking import Tracker

    cfg = config.compose(["dataset=tiny_mnist", "backbone=tiny_clip", "train.epochs=3"])
    start = time.perf_counter()
    list(trainers.fit(cfg))
    plain = time.perf_counter() - start
    (folder / "s.yaml").write_text(STUDY.replace("name: overhead", "name: share"))
    study = spec.load(folder / "s.yaml")
    tracker = Tracker(f"sqlite:///{folder / 'share.db'}").start_study("share", "", {}, {})
    ctx = trial.TrialContext("x", "t000", folder / "share", tracker)
    start = time.perf_counter()
    trial.run(study, {"optim.lr": 0.002}, lambda metrics, state: None, ctx)
    return plain, time.perf_counter() - start


def main() -> None:
    from ablate.study import connect

    connect(None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = bare_tuner(folder)
        ours = ablate_search(folder)
        plain, logged = logging_share(folder)
    print(f"4 trials x 3 epochs, 2 at a time: bare Tuner {bare:.1f} s, ablate search {ours:.1f} s,"
          f" ratio {ours / bare:.2f}")  # fmt: skip
    print(
        f"one trial without Ray: fit {plain:.1f} s, with MLflow + Parquet {logged:.1f} s, "
        f"logging share {(logged - plain) / logged:.0%}"
    )


if __name__ == "__main__":
    main()
