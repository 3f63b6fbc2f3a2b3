"""Replay: a trial reads its metrics from a table of finished training instead of training.

A tabular benchmark (benchmarks/tabular/) trains a study's full grid once and stores every
(configuration, seed, epoch) metric; with `ABLATE_REPLAY=<table.csv>` set, `ablate search` runs
everything but the training (Ray Tune, Optuna, the scheduler, MLflow runs, Parquet parts, the
summary) and each trial yields the table's rows for its configuration and seeds epoch by epoch,
in the shape `trainers.fit_seeds` yields. Searches then cost seconds, so their efficiency can be
measured over many repeats, and the orchestration can be tested end to end without training.

The table is a CSV with one row per (configuration, seed, epoch): the searched parameters'
columns (dotted keys, no slash), `seed`, `epoch`, and the metric columns (with a slash: val/hm);
for a suite of datasets also a `dataset` column.

`ABLATE_REPLAY_FAULTS=raise:0.10,nan:0.05` injects faults for the soak (benchmarks/soak.py): that
share of the configurations raises, or has a NaN training loss, at one epoch; which ones, and the
epoch, follow from the hash of the configuration, so a soak can count what it injected.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# the table's absolute path (a trial may run in another directory), set before Ray starts:
# Ray's local workers inherit the environment of the process that started Ray
ENV = "ABLATE_REPLAY"
# seconds each replayed epoch takes, as if it trained (0: none): orchestration's share of a
# trial with epochs of a given length, and a study slow enough to be interrupted in a test
PACE_ENV = "ABLATE_REPLAY_EPOCH_S"
FAULTS_ENV = "ABLATE_REPLAY_FAULTS"
FAULT_KINDS = ("raise", "nan")


class InjectedFault(RuntimeError):
    """A failure injected by $ABLATE_REPLAY_FAULTS."""


def table_path() -> Path | None:
    """The table to replay, or None when trials train for real."""
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def config_key(values: Mapping[str, Any]) -> str:
    """A configuration's parameter values as the table's cells spell them (str of the value)."""
    return "|".join(f"{k}={values[k]}" for k in sorted(values))


@dataclass
class Table:
    """Rows of a tabular benchmark: config key -> seed -> per-epoch metrics (epoch 1 first)."""

    parameters: list[str]
    cells: dict[str, dict[int, list[dict[str, float]]]] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # config key -> its cells

    def configurations(self) -> set[str]:
        return set(self.cells)

    def curve(self, values: Mapping[str, Any], seed: int) -> list[dict[str, float]]:
        key = config_key({k: values[k] for k in self.parameters})
        try:
            return self.cells[key][seed]
        except KeyError:
            raise KeyError(f"the replay table has no {key} with seed {seed}") from None


@functools.cache
def load_table(path: Path) -> Table:
    """Read a table once per process (a worker replays many trials from it)."""
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        parameters = [c for c in columns if "/" not in c and c not in ("seed", "epoch")]
        table = Table(parameters)
        for row in reader:
            values = {k: row[k] for k in parameters}
            key = config_key(values)
            table.values[key] = values
            curve = table.cells.setdefault(key, {}).setdefault(int(row["seed"]), [])
            if int(row["epoch"]) != len(curve) + 1:
                raise ValueError(f"{path}: {key} seed {row['seed']} epochs out of order")
            curve.append({k: float(v) for k, v in row.items() if "/" in k and v not in ("", None)})
    return table


@dataclass
class ReplayedEpoch:
    """What `trainers.engine.EpochMetrics` offers a trial body, with nothing trained behind it."""

    epoch: int
    metrics: dict[str, float]
    method: Any = field(default_factory=lambda: SimpleNamespace(prompt_tensors=dict))
    costs: dict[str, float] = field(default_factory=dict)  # the table's rows hold any costs

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch}


def fit_seeds(
    values: Mapping[str, Any],
    seeds: Sequence[int],
    epochs: int,
    resumes: Sequence[dict[str, Any] | None] | None = None,
    dataset: str | None = None,
) -> Iterator[list[ReplayedEpoch]]:
    """`trainers.fit_seeds` for a configuration of the table: its seeds' rows, epoch by epoch
    (after the epoch of `resumes`, as a resumed trial continues). A table with a `dataset`
    column replays a suite: each dataset's rows for its part of the trial."""
    path = table_path()
    if path is None:
        raise RuntimeError(f"replay needs ${ENV} set to a table")
    table = load_table(path)
    if dataset and "dataset" in table.parameters:
        values = {**values, "dataset": dataset}
    curves = [table.curve(values, seed) for seed in seeds]
    fault = fault_of(values, epochs)
    first = max((r or {}).get("epoch", 0) for r in (resumes or [None])) + 1
    pace = float(os.environ.get(PACE_ENV) or 0)
    for epoch in range(first, min(epochs, *map(len, curves)) + 1):
        time.sleep(pace)
        replayed = [ReplayedEpoch(epoch, dict(curve[epoch - 1])) for curve in curves]
        if fault == ("raise", epoch):
            raise InjectedFault(f"injected by ${FAULTS_ENV} at epoch {epoch}")
        if fault == ("nan", epoch):
            for r in replayed:
                r.metrics["train/loss"] = float("nan")
        yield replayed


def fault_rates() -> dict[str, float]:
    """$ABLATE_REPLAY_FAULTS as {kind: share of configurations}; empty when unset."""
    value = os.environ.get(FAULTS_ENV, "").strip()
    rates: dict[str, float] = {}
    for item in filter(None, (i.strip() for i in value.split(","))):
        kind, _, share = item.partition(":")
        try:
            rate = float(share)
        except ValueError:
            rate = -1.0
        if kind not in FAULT_KINDS or not 0 <= rate <= 1:
            raise ValueError(
                f"${FAULTS_ENV}={value!r}: {item!r} is not KIND:SHARE with KIND one of "
                f"{', '.join(FAULT_KINDS)} and SHARE in [0, 1]"
            )
        rates[kind] = rate
    if sum(rates.values()) > 1:
        raise ValueError(f"${FAULTS_ENV}={value!r}: the shares add up to more than 1")
    return rates


def fault_of(values: Mapping[str, Any], epochs: int) -> tuple[str, int] | None:
    """The fault $ABLATE_REPLAY_FAULTS injects into this configuration, and its epoch."""
    digest = hashlib.sha256(config_key(values).encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    epoch = 1 + int.from_bytes(digest[8:12], "big") % epochs
    edge = 0.0
    for kind, rate in sorted(fault_rates().items(), key=lambda kv: FAULT_KINDS.index(kv[0])):
        edge += rate
        if draw < edge:
            return kind, epoch
    return None


def stub_backbone() -> Any:
    """Enough of a backbone for describing an empty set of prompts (`trainers.inspect`)."""
    import torch

    token_embedding = SimpleNamespace(weight=torch.zeros(1, 1))
    model = SimpleNamespace(token_embedding=token_embedding)
    return SimpleNamespace(model=model, dims=SimpleNamespace(text_width=1))
