"""Soak: a long study under faults, checked cell by cell (issue 20, item 5).

`ablate search` runs a grid of `--trials` configurations (seeds 1 and 2, `--epochs` epochs, no
early stopping) on the replay trainer (ablate.search.replay: metrics read from a table this
script writes, so a trial costs its orchestration only), with faults injected by
$ABLATE_REPLAY_FAULTS: a share of the configurations raises at one epoch, another has a NaN
training loss at one epoch (which the trial must turn into a failure before it is recorded). The
MLflow tracking server (SQLite) is stopped and started again `--restarts` times while the study
runs. Then every (configuration, seed, epoch) cell is counted in MLflow (the seed runs' metric
history) and in results.parquet:

- failures injected: configurations the fault setting picked (replay.fault_of);
- failures recorded: trials ending `failed`, with the error, in MLflow and in the summary; they
  must be exactly the injected ones;
- cells lost / duplicated: among the other trials, cells missing from, or present more than
  once in, MLflow or the results table (both must be 0).

    python benchmarks/soak.py                         # 200 trials, 2 server restarts
    python benchmarks/soak.py --trials 20 --restarts 1 --json out.json   # the slow test's size
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = (1, 2)
STUDY = """\
name: soak
method: coop
base: {{dataset: tiny_mnist, backbone: tiny_clip, train.epochs: {epochs}}}
metric: {{name: val/hm, goal: maximize}}
parameters:
  optim.lr: {{values: {lrs}}}
seeds: {seeds}
search: {{algorithm: grid, max_concurrent: 2}}
scheduler: {{type: none}}
retries: {retries}
"""


def learning_rates(trials: int) -> list[float]:
    return [round(0.001 * (i + 1), 6) for i in range(trials)]


def write_table(path: Path, lrs: list[float], epochs: int) -> None:
    """A made-up learning curve per (configuration, seed): every cell distinct."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["optim.lr", "seed", "epoch", "train/loss", "val/hm", "test/hm"])
        for lr in lrs:
            for seed in SEEDS:
                for epoch in range(1, epochs + 1):
                    hm = 40 + 10 * lr + seed / 10 + epoch
                    test = hm - 1 if epoch == epochs else ""
                    out.writerow([lr, seed, epoch, 2 / (epoch + lr), hm, test])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on a SQLite file, stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{self.folder / 'server.db'}", "--artifacts-destination",
             str(self.folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            stdout=(self.folder / "mlflow.log").open("a"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"mlflow server did not start: {self.folder / 'mlflow.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def restart_during(
    server: Server, parts: Path, at: list[int], done: threading.Event, down_s: float
) -> list:
    """Restart the server, `down_s` seconds after stopping it, each time the study has written
    results for `at[i]` trials."""
    restarts: list[float] = []

    def watch() -> None:
        for threshold in at:
            while not done.is_set() and _count(parts) < threshold:
                time.sleep(0.2)
            if done.is_set():
                return
            server.stop()
            time.sleep(down_s)  # calls fail, are retried or wait in the spool
            server.start()
            restarts.append(time.monotonic())

    threading.Thread(target=watch, daemon=True).start()
    return restarts


def _count(parts: Path) -> int:
    return len(list(parts.glob("*.parquet"))) if parts.exists() else 0


def soak(
    trials: int,
    restarts: int,
    epochs: int,
    faults: str,
    retries: int,
    folder: Path,
    down_s: float = 2.0,
):
    from ablate.search import replay

    lrs = learning_rates(trials)
    write_table(folder / "table.csv", lrs, epochs)
    (folder / "soak.yaml").write_text(
        STUDY.format(epochs=epochs, lrs=lrs, seeds=list(SEEDS), retries=retries)
    )
    os.environ[replay.FAULTS_ENV] = faults  # what the fault setting picks, read back here
    injected = {lr: f for lr in lrs if (f := replay.fault_of({"optim.lr": lr}, epochs))}
    server = Server(folder)
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env |= {replay.ENV: str(folder / "table.csv"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ablate.cli", "search", "soak.yaml", "-q",
               "--tracking-uri", server.uri]  # fmt: skip
    done = threading.Event()
    at = [trials * (i + 1) // (restarts + 1) for i in range(restarts)]
    restarted = restart_during(server, folder / "results/soak/parts", at, done, down_s)
    started = time.monotonic()
    try:
        run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.monotonic() - started
        done.set()
        (folder / "search.log").write_text(run.stdout + run.stderr)
        figures = count(server.uri, folder, lrs, injected, epochs)
    finally:
        done.set()
        server.stop()
    return figures | {
        "trials": trials,
        "epochs": epochs,
        "seeds": len(SEEDS),
        "server_restarts": len(restarted),
        "exit_code": run.returncode,
        "wall_s": round(wall, 1),
        "summary": next((line for line in run.stdout.splitlines() if "finished in" in line), ""),
    }


def count(uri: str, folder: Path, lrs: list, injected: dict, epochs: int) -> dict:
    """Failures and cells, as MLflow and results.parquet hold them."""
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("soak")
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    trial_runs = [r for r in runs if r.data.tags.get("ablate.role") == "trial"]
    seed_runs = [r for r in runs if r.data.tags.get("ablate.role") == "seed"]
    failed = {
        float(r.data.params["optim.lr"]): r.data.tags.get("ablate.error", "")
        for r in trial_runs
        if r.data.tags.get("ablate.status") == "failed" and r.info.status == "FAILED"
    }
    healthy = [lr for lr in lrs if lr not in injected]
    expected = collections.Counter(
        (lr, seed, epoch) for lr in healthy for seed in SEEDS for epoch in range(1, epochs + 1)
    )
    in_mlflow: collections.Counter = collections.Counter()
    for run in seed_runs:
        lr = float(run.data.params["optim.lr"])
        if lr in injected:
            continue
        for metric in client.get_metric_history(run.info.run_id, "val/hm"):
            in_mlflow[(lr, int(run.data.params["seed"]), metric.step)] += 1
    table = folder / "results/soak/results.parquet"
    rows = pq.read_table(table).to_pylist() if table.exists() else []
    in_table = collections.Counter(
        (float(r["optim.lr"]), r["seed"], r["epoch"])
        for r in rows
        if float(r["optim.lr"]) not in injected
    )
    per_config = collections.Counter(float(r.data.params["optim.lr"]) for r in trial_runs)
    return {
        "failures_injected": len(injected),
        "injected_raise": sum(f[0] == "raise" for f in injected.values()),
        "injected_nan": sum(f[0] == "nan" for f in injected.values()),
        "failures_recorded": len(failed),
        "failures_recorded_are_injected": set(failed) == set(injected),
        "failures_with_error": sum(bool(e) for e in failed.values()),
        "trial_runs_duplicated": sum(n - 1 for n in per_config.values()),
        "runs_left_running": sum(r.info.status == "RUNNING" for r in runs),
        # runs created as a spool was replayed: trials that started while the server was down
        "runs_created_from_spool": sum("ablate.spooled_as" in r.data.tags for r in runs),
        "calls_left_in_spool": sum(
            len(f.read_text().splitlines())
            for f in (folder / "results/soak/mlflow-spool").glob("*.jsonl")
        ),
        "cells_expected": len(expected),
        "cells_lost_mlflow": len(set(expected) - set(in_mlflow)),
        "cells_duplicated_mlflow": sum(n - 1 for n in in_mlflow.values()),
        "cells_lost_parquet": len(set(expected) - set(in_table)),
        "cells_duplicated_parquet": sum(n - 1 for n in in_table.values()),
        "failed_rows_stamped": all(
            r["status"] == "failed" for r in rows if float(r["optim.lr"]) in injected
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=2, help="MLflow server restarts")
    parser.add_argument(
        "--down-s", type=float, default=2.0, help="seconds the server stays down per restart"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--faults", default="raise:0.10,nan:0.05")
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="keep everything here (default: a temp)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="ablate-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    figures = soak(
        args.trials, args.restarts, args.epochs, args.faults, args.retries, folder, args.down_s
    )
    for key, value in figures.items():
        print(f"{key:32s} {value}")
    print(f"(everything in {folder})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
