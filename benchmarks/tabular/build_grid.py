"""Train the tabular benchmark's full grid once and store every (configuration, seed, epoch).

Every configuration of `maple_grid.yaml` (the product of its `values`) is composed exactly as
`ablate search` composes a trial (`StudySpec.trial_overrides` -> `ablate.config.compose`) and
trained through `trainers.fit_seeds` for all the study's seeds in lockstep; each epoch's metrics
(train/*, val/*, and test/* after the last epoch, as the trainers emit them) become one row per
seed of `grid.csv`. Rows are appended configuration by configuration, and a configuration
already in the file is skipped, so an interrupted build continues where it stopped.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/tabular/build_grid.py
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path
from typing import Any

import trainers
from ablate import config, spec
from ablate.search import replay
from ablate.search.trial_body import shared_inputs

HERE = Path(__file__).parent
STUDY = HERE / "maple_grid.yaml"
TABLE = HERE / "grid.csv"


def grid_values(study: spec.StudySpec) -> list[dict[str, Any]]:
    """Every configuration of the study's discrete parameters, in the file's order."""
    params = study.search_parameters()
    combos = itertools.product(*(p.values for p in params))
    return [{p.key: v for p, v in zip(params, combo)} for combo in combos]


def train_rows(study: spec.StudySpec, values: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = config.compose(study.trial_overrides(values))
    backbone, task, frozen = shared_inputs(cfg)
    rows = []
    for per_seed in trainers.fit_seeds(cfg, study.seeds, backbone, task, None, frozen):
        for seed, m in zip(study.seeds, per_seed):
            rows.append(values | {"seed": seed, "epoch": m.epoch} | m.metrics)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", type=Path, default=STUDY)
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args()
    study = spec.load(args.study)
    done = replay.load_table(args.out).configurations() if args.out.exists() else set()
    start = time.perf_counter()
    for number, values in enumerate(grid_values(study), 1):
        if replay.config_key(values) in done:
            continue
        rows = train_rows(study, values)
        append_rows(args.out, rows)
        print(f"{number:3d} {values} val/hm {rows[-1].get('val/hm', float('nan')):.1f} "
              f"{time.perf_counter() - start:.0f}s", flush=True)  # fmt: skip


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append `rows`; the header is the first configuration's columns plus test/* ones."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if path.exists():
        with path.open() as f:
            columns = next(csv.reader(f))
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
