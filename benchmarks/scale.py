"""Scale: studies of 16, 128 and 1,000 trials through the real `ablate search` path with the
replay trainer (no training), to show what grows with the number of trials.

Each study is a grid over three optimiser settings (every configuration distinct, one seed,
3 epochs, no early stopping, 2 trials at a time) replayed from a synthetic table. Measured per
study, side by side in one run: the wall time of `ablate search` and the part of it per trial,
the time to the first trial's first epoch, the driver's peak memory (VmHWM), the MLflow store's
and the results folder's size, and the time of `ablate report`.

    python benchmarks/scale.py                      # 16, 128 and 1000 trials
    python benchmarks/scale.py --trials 16 128      # a quick look
    python benchmarks/scale.py --scheduler asha     # ASHA stops trials: the driver closes them
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
SHAPES = {16: (4, 4, 1), 128: (8, 4, 4), 1000: (10, 10, 10)}  # grid levels per parameter
KEYS = ("optim.lr", "optim.momentum", "optim.weight_decay")


def levels(shape: tuple[int, int, int]) -> list[list[float]]:
    lrs = [round(0.001 * (i + 1), 6) for i in range(shape[0])]
    momenta = [round(0.5 + 0.04 * i, 6) for i in range(shape[1])]
    decays = [round(0.0001 * i, 6) for i in range(shape[2])]
    return [lrs, momenta, decays]


def write_study(folder: Path, trials: int, scheduler: str = "none") -> Path:
    grid = levels(SHAPES[trials])
    with (folder / "table.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*KEYS, "seed", "epoch", "val/hm", "test/base", "test/new", "test/hm"])
        for i, combo in enumerate(itertools.product(*grid)):
            for epoch in range(1, EPOCHS + 1):
                value = 50 + (i % 37) / 3 + epoch
                last = [value + 2, value - 2, value] if epoch == EPOCHS else ["", "", ""]
                writer.writerow([*combo, 1, epoch, value, *last])
    params = "\n".join(f"  {k}: {{values: {v}}}" for k, v in zip(KEYS, grid))
    study = folder / "study.yaml"
    study.write_text(
        f"name: scale{trials}\nmethod: coop\n"
        f"base: {{dataset: tiny_mnist, backbone: tiny_clip, train.epochs: {EPOCHS}}}\n"
        f"parameters:\n{params}\nseeds: [1]\nsearch: {{algorithm: grid, max_concurrent: 2}}\n"
        f"scheduler: {{type: {scheduler}, grace_epochs: 1}}\n"
    )
    return study


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_study(trials: int, folder: Path, scheduler: str = "none") -> dict[str, float]:
    study = write_study(folder, trials, scheduler)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env |= {"ABLATE_REPLAY": str(folder / "table.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", "search", str(study), "-q"]
    parts = folder / f"results/scale{trials}/parts"
    start = time.perf_counter()
    driver = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    first = peak = 0.0
    while driver.poll() is None:
        peak = max(peak, peak_rss_mb(driver.pid))
        if not first and parts.is_dir() and any(parts.iterdir()):
            first = time.perf_counter() - start
        time.sleep(0.05)
    wall = time.perf_counter() - start
    out = driver.stdout.read() if driver.stdout else ""
    if driver.returncode != 0:
        raise SystemExit(f"the {trials}-trial study failed:\n{out[-3000:]}")
    report_start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "report", f"scale{trials}"],
        cwd=folder, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the report of {trials} trials failed:\n{done.stderr[-3000:]}")
    report = time.perf_counter() - report_start
    return {
        "trials": trials,
        "wall_s": wall,
        "first_epoch_s": first,
        "per_trial_s": (wall - first) / trials,
        "driver_peak_mb": peak,
        "mlflow_mb": (folder / "mlflow.db").stat().st_size / 2**20,
        "results_mb": _size(folder / f"results/scale{trials}") / 2**20,
        "report_s": report,
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=sorted(SHAPES), choices=SHAPES)
    parser.add_argument("--scheduler", default="none", help="the study's scheduler.type")
    args = parser.parse_args()
    rows = []
    for trials in args.trials:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_study(trials, Path(tmp), args.scheduler))
            print(_line(rows[-1]), flush=True)
    print("\n| trials | wall | first epoch | per trial after it | driver peak | MLflow store "
          "| results folder | `ablate report` |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['trials']} | {r['wall_s']:.1f} s | {r['first_epoch_s']:.1f} s "
            f"| {r['per_trial_s']:.3f} s | {r['driver_peak_mb']:.0f} MB "
            f"| {r['mlflow_mb']:.1f} MB | {r['results_mb']:.1f} MB | {r['report_s']:.1f} s |"
        )


def _line(r: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in r.items())


if __name__ == "__main__":
    main()
