"""Orchestration and logging overhead, measured side by side in one run (medians of --repeats
alternating runs: the machine's CPUs may be shared).

1. The same 4 trials (CoOp on tiny_mnist with tiny_clip, one seed, a grid of learning rates, no
   early stopping, 2 at a time) through `ablate search` and through a bare `ray.tune.Tuner`
   whose trainable only calls `trainers.fit` and `tune.report`, with Ray's default of a fresh
   worker per trial and with `reuse_actors=True` (which ablate sets). Ray is started once
   before, so neither side pays its start; ablate pays validation, and a new MLflow store or
   (a user's next study in the same folder) one that exists.
2. One trial body without Ray, after a warm-up: the replay trainer with 1-s epochs (3 seeds; as
   a GPU trains, the CPU idles meanwhile) alone vs `trial_body.run` (MLflow on SQLite, the
   Parquet part, the checkpoint's serialisation), and `trainers.fit` (real CPU training, one
   seed) alone vs `trial_body.run`: the logging share of a trial.
3. Start-up and wind-down, each a fresh process: `ablate search` of a replayed 2-trial study vs
   a bare script (`ray.init` + a Tuner whose trainable reports the same epochs): from launch
   to the first trial's first epoch, and from the last epoch to the process's end.

    python benchmarks/orchestration_overhead.py                     # 3 epochs per trial
    python benchmarks/orchestration_overhead.py --epochs 30         # longer trials
    python benchmarks/orchestration_overhead.py --parts 2 3         # only some parts
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LRS = [0.01, 0.03, 0.1, 0.3]
STUDY = """\
name: NAME
method: coop
base: {dataset: tiny_mnist, backbone: tiny_clip, train.epochs: EPOCHS, optim.warmup_epochs: 0}
parameters: {optim.lr: {values: [0.01, 0.03, 0.1, 0.3]}}
seeds: SEEDS
search: {algorithm: grid, max_concurrent: 2}
scheduler: {type: none}
"""
EPOCHS = 3


def study_text(name: str, epochs: int, seeds: str = "[1]") -> str:
    return STUDY.replace("NAME", name).replace("EPOCHS", str(epochs)).replace("SEEDS", seeds)


# ---- 1. orchestration: ablate search vs a bare Tuner ---------------------------------------
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
        run_config=tune.RunConfig(storage_path=str(folder), verbose=0),
    ).fit()
    return time.perf_counter() - start


def ablate_search(folder: Path, name: str = "overhead") -> float:
    from ablate.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(study_text(name, EPOCHS))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        start = time.perf_counter()
        assert main(["search", f"{name}.yaml", "-q"]) == 0
        return time.perf_counter() - start
    finally:
        os.chdir(cwd)


def orchestration(folder: Path, repeats: int) -> None:
    import ray
    from mlflow.tracking import MlflowClient

    # started here, not by ablate's `connect`: a Ray that ablate did not start, it leaves running
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    shared = folder / "shared"  # a folder whose MLflow store exists: a user's next study
    shared.mkdir(parents=True)
    MlflowClient(f"sqlite:///{shared / 'mlflow.db'}").search_experiments()
    times: dict[str, list[float]] = {"bare": [], "reused": [], "ablate": [], "existing": []}
    for n in range(repeats):
        times["bare"].append(bare_tuner(folder / f"bare{n}", reuse=False))
        times["reused"].append(bare_tuner(folder / f"reused{n}", reuse=True))
        times["ablate"].append(ablate_search(folder / f"ablate{n}"))
        times["existing"].append(ablate_search(shared, f"overhead{n}"))
    bare, reused, ours, again = (
        statistics.median(times[k]) for k in ("bare", "reused", "ablate", "existing")
    )
    print(f"1. 4 trials x {EPOCHS} epochs, 2 at a time (medians of {repeats}): bare Tuner "
          f"{bare:.1f} s, bare Tuner reusing workers {reused:.1f} s, ablate search {ours:.1f} s"
          f" (a new MLflow store), {again:.1f} s (its store exists); ratios to the bare Tuner "
          f"{ours / bare:.2f}, to the bare Tuner reusing workers {ours / reused:.2f} and "
          f"{again / reused:.2f}", flush=True)  # fmt: skip


# ---- 2. the logging share of one trial ------------------------------------------------------
def logging_share(folder: Path, repeats: int, epoch_s: float) -> None:
    import torch

    import trainers
    from ablate import config, spec
    from ablate.search import replay
    from ablate.search import trial_body as trial
    from ablate.tracking import Tracker

    table = folder / "table.csv"
    rows = ["optim.lr,seed,epoch,val/hm,test/hm"] + [
        f"{lr},{seed},{e},{50 + e + seed},{50 + e if e == EPOCHS else ''}"
        for lr in [round(0.001 * i, 4) for i in range(1, 2 * repeats + 3)]
        for seed in (1, 2, 3)
        for e in range(1, EPOCHS + 1)
    ]
    table.write_text("\n".join(rows) + "\n")
    tracker = Tracker(f"sqlite:///{folder / 'share.db'}").start_study("share", "", {}, {})

    def checkpoint(metrics: dict, state: dict) -> None:  # what the trainable serialises
        torch.save(state, io.BytesIO())

    def logged(study: spec.StudySpec, lr: float, number: int) -> float:
        ctx = trial.TrialContext(f"x{number}", f"t{number:03d}", folder / "share", tracker)
        start = time.perf_counter()
        trial.run(study, {"optim.lr": lr}, checkpoint, ctx)
        return time.perf_counter() - start

    # replay with 1-s epochs: the trial's compute leaves the CPU idle, as on a GPU
    os.environ[replay.ENV], os.environ[replay.PACE_ENV] = str(table), str(epoch_s)
    (folder / "r.yaml").write_text(study_text("share", EPOCHS, "[1, 2, 3]"))
    study = spec.load(folder / "r.yaml")
    paced: dict[str, list[float]] = {"plain": [], "logged": []}
    logged(study, 0.001, 0)  # warm-up
    for n in range(1, repeats + 1):
        start = time.perf_counter()
        list(replay.fit_seeds({"optim.lr": 0.001}, [1, 2, 3], EPOCHS))
        paced["plain"].append(time.perf_counter() - start)
        paced["logged"].append(logged(study, round(0.001 * (n + 1), 4), n))
    del os.environ[replay.ENV], os.environ[replay.PACE_ENV]

    # real training on the CPU, one seed: the logging competes with it for the cores
    cfg = config.compose(["dataset=tiny_mnist", "backbone=tiny_clip", f"train.epochs={EPOCHS}"])
    (folder / "s.yaml").write_text(study_text("share", EPOCHS))
    study = spec.load(folder / "s.yaml")
    backbone, task, _ = trial.shared_inputs(cfg)  # both variants start with them loaded
    real: dict[str, list[float]] = {"plain": [], "logged": []}
    list(trainers.fit(cfg, backbone, task)), logged(study, 0.002, 100)  # warm-up
    for n in range(1, repeats + 1):
        start = time.perf_counter()
        list(trainers.fit(cfg, backbone, task))
        real["plain"].append(time.perf_counter() - start)
        real["logged"].append(logged(study, 0.002 + n * 1e-4, 100 + n))
    for name, times in ((f"replay, {epoch_s:g}-s epochs, 3 seeds", paced),
                        ("trainers.fit on the CPU, 1 seed", real)):  # fmt: skip
        plain, log = statistics.median(times["plain"]), statistics.median(times["logged"])
        print(f"2. one trial of {EPOCHS} epochs, {name} (medians of {repeats}): alone "
              f"{plain:.2f} s, with MLflow + Parquet + checkpoint {log:.2f} s, logging share "
              f"{(log - plain) / log:.1%}", flush=True)  # fmt: skip


# ---- 3. start-up and wind-down, fresh processes ---------------------------------------------
BARE_SCRIPT = """\
import sys, time
from pathlib import Path
import ray
from ray import tune
def trainable(params, folder=sys.argv[1], epochs=int(sys.argv[2]), pace=float(sys.argv[3])):
    for epoch in range(1, epochs + 1):
        time.sleep(pace)
        Path(folder, f"epoch-{time.time()}").touch()
        tune.report({"val/hm": 50.0 + epoch})
ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
           param_space={"lr": tune.grid_search([0.01, 0.03])},
           tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
           run_config=tune.RunConfig(storage_path=sys.argv[1] + "/ray", verbose=0)).fit()
ray.shutdown()
"""


def _watch(command: list[str], cwd: Path, env: dict, marks: Path) -> tuple[float, float]:
    """(launch to the first epoch's mark, the last epoch's mark to the process's end): marks
    are files written at each epoch (Parquet parts, or the bare script's touch files)."""
    start, first, last = time.time(), None, None
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    while process.poll() is None:
        found = marks.glob("*") if marks.is_dir() else []
        times = [p.stat().st_mtime for p in found if p.name.startswith(("epoch-", "part-"))]
        if times:
            first = first or min(times)
            last = max(times)
        time.sleep(0.02)
    end = time.time()
    if process.returncode != 0 or first is None or last is None:
        raise SystemExit(f"{command} failed ({process.returncode})")
    return first - start, end - last


def startup(folder: Path, repeats: int, epoch_s: float) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", str(REPO))
    table = folder / "table.csv"
    lines = [f"{lr},1,{e},{50 + e},{50 + e if e == 2 else ''}" for lr in LRS for e in (1, 2)]
    table.write_text("\n".join(["optim.lr,seed,epoch,val/hm,test/hm", *lines]) + "\n")
    (folder / "bare.py").write_text(textwrap.dedent(BARE_SCRIPT))
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "ablate": []}
    for n in range(repeats):
        bare = folder / f"bare{n}"
        bare.mkdir()
        command = [sys.executable, str(folder / "bare.py"), str(bare), "2", str(epoch_s)]
        times["bare"].append(_watch(command, folder, env, bare))
        ours = folder / f"ablate{n}"
        ours.mkdir()
        (ours / "study.yaml").write_text(
            study_text("start", 2).replace("[0.01, 0.03, 0.1, 0.3]", "[0.01, 0.03]")
        )
        replayed = env | {"ABLATE_REPLAY": str(table), "ABLATE_REPLAY_EPOCH_S": str(epoch_s)}
        command = [sys.executable, "-m", "ablate.cli", "search", "study.yaml", "-q"]
        times["ablate"].append(_watch(command, ours, replayed, ours / "results/start/parts"))
    for name in ("bare", "ablate"):
        first = statistics.median(t[0] for t in times[name])
        last = statistics.median(t[1] for t in times[name])
        label = "bare ray.init + Tuner" if name == "bare" else "ablate search"
        print(f"3. {label} (medians of {repeats}): launch to the first epoch {first:.1f} s, "
              f"last epoch to the end {last:.1f} s", flush=True)  # fmt: skip


def main() -> None:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per trial")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per variant")
    parser.add_argument("--epoch-s", type=float, default=1.0, help="replayed epoch length")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    args = parser.parse_args()
    EPOCHS = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for part in ("startup", "share"):
            (folder / part).mkdir()
        if 3 in args.parts:  # first: its processes start their own Ray
            startup(folder / "startup", args.repeats, args.epoch_s)
        if 2 in args.parts:
            logging_share(folder / "share", args.repeats, args.epoch_s)
        if 1 in args.parts:
            orchestration(folder / "orchestration", args.repeats)


if __name__ == "__main__":
    main()
