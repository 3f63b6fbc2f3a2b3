"""pyarrow lives here and only here: the authoritative results table.

One row per (trial, seed, epoch). Trials write `parts/part-<trial_key>.parquet` atomically after
every epoch (so a trial stopped by the scheduler keeps every epoch it finished); `compact` merges
the parts into `results.parquet`, keeping one row per (trial_key, seed, epoch), and stamps each
trial's final status.

Columns (see README "Results table"):
    study (str), trial_id (str, Ray's), trial_name (str, t000...), trial_key (str, sha256 of the
    resolved config without the seed), seed (int64), epoch (int64, 1-based), wall_s (float64,
    seconds since the trial started), status (str: completed | pruned | failed | running),
    one float64 column per metric (train/loss, train/lr, val/base, val/new, val/hm, test/...,
    diag/...), and one column per searched parameter under its dotted key (lists as JSON text).
Dotted and slashed column names must be quoted in SQL engines such as duckdb: "val/hm".
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEY_COLUMNS = ("trial_key", "seed", "epoch")
FIXED = pa.schema(
    [
        ("study", pa.string()),
        ("trial_id", pa.string()),
        ("trial_name", pa.string()),
        ("trial_key", pa.string()),
        ("seed", pa.int64()),
        ("epoch", pa.int64()),
        ("wall_s", pa.float64()),
        ("status", pa.string()),
    ]
)
RESULTS_FILE = "results.parquet"


def cell(value: Any) -> Any:
    """A parameter value as a Parquet cell: scalars as they are, lists as JSON text."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def uncell(value: Any) -> Any:
    """Inverse of `cell`: JSON text of a list back to the list."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def write_part(rows: list[dict[str, Any]], folder: Path, name: str) -> Path:
    """Write `rows` to folder/parts/part-<name>.parquet via a temporary file and a rename."""
    parts = folder / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    target = parts / f"part-{name}.parquet"
    tmp = parts / f".tmp-{uuid.uuid4().hex}"
    pq.write_table(_table(rows), tmp)
    os.replace(tmp, target)
    return target


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = list(FIXED.names) + sorted({k for r in rows for k in r} - set(FIXED.names))
    fields = [FIXED.field(c) if c in FIXED.names else _infer_field(c, rows) for c in columns]
    data = {c: [r.get(c) for r in rows] for c in columns}
    return pa.table(data, schema=pa.schema(fields))


def _infer_field(column: str, rows: list[dict[str, Any]]) -> pa.Field:
    values = [r.get(column) for r in rows if r.get(column) is not None]
    if "/" in column or all(isinstance(v, float) for v in values):
        return pa.field(column, pa.float64())
    return pa.field(column, pa.array(values).type if values else pa.null())


def compact(folder: Path, statuses: Mapping[str, str] | None = None) -> Path:
    """Merge every part into results.parquet (last write wins per key); stamp final statuses."""
    parts = sorted((folder / "parts").glob("part-*.parquet"))
    target = folder / RESULTS_FILE
    tables = [pq.read_table(p) for p in parts]
    if target.exists():
        tables.insert(0, pq.read_table(target))
    if not tables:
        return target
    table = pa.concat_tables(tables, promote_options="permissive")
    table = _dedupe(table)
    if statuses:
        current = table.column("status").to_pylist()
        keys = table.column("trial_id").to_pylist()
        stamped = [statuses.get(k, s) for k, s in zip(keys, current)]
        table = table.set_column(
            table.schema.get_field_index("status"), "status", pa.array(stamped)
        )
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    for part in parts:  # merged: a later compaction must not let their stale statuses win
        part.unlink(missing_ok=True)
    return target


def _dedupe(table: pa.Table) -> pa.Table:
    keys = list(zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS)))
    last = {k: i for i, k in enumerate(keys)}
    keep = sorted(last.values())
    table = table.take(pa.array(keep))
    order = pc.sort_indices(table, [(c, "ascending") for c in ("trial_name", "seed", "epoch")])
    return table.take(order)


def read(path: Path) -> pa.Table:
    return pq.read_table(path)


def read_all(folder: Path) -> pa.Table | None:
    """results.parquet plus every part not compacted yet (a killed driver leaves parts), deduped."""
    tables = [pq.read_table(p) for p in sorted((folder / "parts").glob("part-*.parquet"))]
    if (folder / RESULTS_FILE).exists():
        tables.insert(0, pq.read_table(folder / RESULTS_FILE))
    if not tables:
        return None
    return _dedupe(pa.concat_tables(tables, promote_options="permissive"))


def finished_cells(folder: Path, trial_key: str, epochs: int) -> dict[int, list[dict[str, Any]]]:
    """seed -> its rows (epoch 1..epochs) for the seeds of `trial_key` trained to the end."""
    table = read_all(folder)
    if table is None:
        return {}
    rows = [r for r in table.to_pylist() if r["trial_key"] == trial_key]
    cells: dict[int, list[dict[str, Any]]] = {}
    for seed in {r["seed"] for r in rows}:
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["epoch"])
        if [r["epoch"] for r in mine] == list(range(1, epochs + 1)) and mine[-1]["status"] not in (
            "failed",
            "pruned",
        ):
            cells[seed] = mine
    return cells


def rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of the study's table (parts not compacted yet included), as dicts."""
    table = read_all(folder)
    return [] if table is None else table.to_pylist()
