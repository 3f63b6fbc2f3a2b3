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

A study folder is a local path (an NFS mount included) or, for studies on a cluster, a URI that
`pyarrow.fs` opens (`s3://bucket/prefix`, `gs://...`, `file:///...`): every function here takes
either, and `probe` checks that a storage location can be written, read and cleaned up.

Faults: a write that finds the device full raises `DiskFull` naming the file (its temporary
file removed, the file it replaces untouched); a part or table that cannot be read (truncated,
torn) is set aside as `<name>.corrupt`, never deleted, and its cells count as not done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ablate.errors import DiskFull, is_disk_full

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
Location = Path | str  # a local folder, or a URI that pyarrow.fs opens (s3://, gs://, file://)
DISK_RESERVE_ENV = "ABLATE_DISK_RESERVE_MB"
CORRUPT = ".corrupt"  # suffix of a file set aside because it cannot be read
log = logging.getLogger("ablate")


def is_uri(location: Location) -> bool:
    return isinstance(location, str) and "://" in location


def join(folder: Location, *names: str) -> Location:
    """folder/name/... for paths and URIs alike (Path would fold a URI's `//`)."""
    if is_uri(folder):
        return "/".join([str(folder).rstrip("/"), *names])
    return Path(folder, *names)


def study_location(root: Location, name: str) -> Location:
    """The study's folder under a storage root: an absolute path, or a URI."""
    return join(root, name) if is_uri(root) else Path(root).resolve() / name


def _fs(location: Location) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), os.path.abspath(location)


def exists(location: Location) -> bool:
    fs, path = _fs(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(folder: Location) -> None:
    fs, path = _fs(folder)
    fs.create_dir(path, recursive=True)


def _write_atomic(fs: pafs.FileSystem, target: str, write: Any) -> None:
    """A whole file or none: a temporary file and a rename where renames are atomic (local
    disks, NFS); object stores make a single upload visible at once, so it goes straight there."""
    tmp = f"{target.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
    local = isinstance(fs, pafs.LocalFileSystem)
    try:
        write(tmp if local else target)
        if local:
            fs.move(tmp, target)
    except OSError as err:
        if local:
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
        if is_disk_full(err):
            raise DiskFull(target, "no space left on device") from err
        raise


def disk_reserve() -> int:
    """Bytes a study keeps free where it writes ($ABLATE_DISK_RESERVE_MB, default 100): it
    stops below them, so Ray's experiment state, checkpoints and the table are written whole."""
    return int(float(os.environ.get(DISK_RESERVE_ENV) or 100) * 2**20)


def low_space(location: Location) -> str | None:
    """Why `location`'s disk is too full for a study to go on, or None (always, for a URI)."""
    free, reserve = free_bytes(location), disk_reserve()
    if free is None or free >= reserve:
        return None
    return (
        f"{free / 2**20:.2f} MiB free, less than the {reserve / 2**20:.2f} MiB a study keeps "
        f"free (${DISK_RESERVE_ENV})"
    )


def free_bytes(location: Location) -> int | None:
    """Free space where `location` (or its nearest existing parent) lives; None for a URI."""
    if is_uri(location):
        return None
    path = Path(location).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def write_text(folder: Location, name: str, text: str) -> None:
    write_bytes(folder, name, text.encode())


def write_bytes(folder: Location, name: str, data: bytes) -> None:
    """folder/name holding `data`, whole or not at all (the folder is made if missing)."""
    fs, path = _fs(folder)
    fs.create_dir(path, recursive=True)

    def write(target: str) -> None:
        with fs.open_output_stream(target) as out:
            out.write(data)

    _write_atomic(fs, f"{path}/{name}", write)


def read_text(folder: Location, name: str) -> str | None:
    """The file's text, or None when it does not exist."""
    data = read_bytes(folder, name)
    return None if data is None else data.decode()


def read_bytes(folder: Location, name: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs, path = _fs(folder)
    try:
        with fs.open_input_stream(f"{path}/{name}") as src:
            return src.read()
    except FileNotFoundError:
        return None


def probe(location: Location) -> str | None:
    """None when `location` takes a file, gives it back and lets it be deleted; else why not.

    The pre-flight check of shared storage (`--storage`), before a study starts."""
    name = f".ablate-probe-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    try:
        write_text(location, name, token)
    except Exception as err:
        return f"cannot write {join(location, name)}: {_reason(err)}"
    try:
        back = read_text(location, name)
        if back != token:
            return f"wrote {join(location, name)} but read back {back!r}"
        fs, path = _fs(location)
        fs.delete_file(f"{path}/{name}")
    except Exception as err:
        return f"wrote {join(location, name)} but could not read or delete it: {_reason(err)}"
    return None


def check_readable(location: Location, name: str, token: str) -> str | None:
    """None when `location/name` holds `token` (another node wrote it); else why not."""
    try:
        back = read_text(location, name)
    except Exception as err:
        return _reason(err)
    if back is None:
        return f"{join(location, name)} does not exist here (not shared storage?)"
    return None if back == token else f"{join(location, name)} holds something else"


def remove(location: Location, name: str) -> None:
    fs, path = _fs(location)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(f"{path}/{name}")


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


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


def write_part(rows: list[dict[str, Any]], folder: Location, name: str) -> Location:
    """Write `rows` to folder/parts/part-<name>.parquet, whole or not at all."""
    fs, path = _fs(folder)
    fs.create_dir(f"{path}/parts", recursive=True)
    table = _table(rows)
    _write_atomic(
        fs, f"{path}/parts/part-{name}.parquet", lambda t: pq.write_table(table, t, filesystem=fs)
    )
    return join(folder, "parts", f"part-{name}.parquet")


def _parts(folder: Location) -> tuple[pafs.FileSystem, str, list[str]]:
    """The filesystem, the folder's path on it, and its parts (sorted paths)."""
    fs, path = _fs(folder)
    selector = pafs.FileSelector(f"{path}/parts", allow_not_found=True)
    parts = [
        info.path
        for info in fs.get_file_info(selector)
        if info.base_name.startswith("part-") and info.base_name.endswith(".parquet")
    ]
    return fs, path, sorted(parts)


def _tables(fs: pafs.FileSystem, path: str, parts: list[str]) -> list[pa.Table]:
    """results.parquet (when there is one) then every part; unreadable ones set aside."""
    target = f"{path}/{RESULTS_FILE}"
    files = [target] if fs.get_file_info(target).type != pafs.FileType.NotFound else []
    tables = [_read_or_set_aside(fs, f) for f in files + parts]
    return [t for t in tables if t is not None]


def _read_or_set_aside(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    """The file's table; None when it cannot be read (truncated, torn), after moving it to
    `<path>.corrupt` so the next read does not trip on it and its cells are trained again."""
    try:
        return pq.read_table(path, filesystem=fs)
    except FileNotFoundError:
        return None  # compacted and deleted since it was listed
    except (pa.ArrowInvalid, OSError) as err:
        # a truncated file is ArrowInvalid, damaged pages an OSError; a remote store's OSError
        # may be the network and a permission error is not the file's fault: both raise
        remote = not isinstance(fs, pafs.LocalFileSystem)
        if isinstance(err, PermissionError) or (remote and not isinstance(err, pa.ArrowInvalid)):
            raise
        aside = _set_aside(fs, path)
        log.warning(
            f"ablate: {path} cannot be read ({_reason(err)}); set aside as {aside}. The cells "
            "it held count as not done: the next `ablate search` of this study trains them again."
        )
        return None


def set_aside(location: Location) -> Location:
    """Move an unreadable file to `<name>.corrupt` (numbered when taken); returns where."""
    fs, path = _fs(location)
    aside = _set_aside(fs, path)
    return aside if not is_uri(location) else join(str(location) + aside[len(path) :])


def _set_aside(fs: pafs.FileSystem, path: str) -> str:
    aside, number = f"{path}{CORRUPT}", 1
    while fs.get_file_info(aside).type != pafs.FileType.NotFound:
        number += 1
        aside = f"{path}{CORRUPT}-{number}"
    fs.move(path, aside)
    return aside


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


def compact(
    folder: Location,
    statuses: Mapping[str, str] | None = None,
    nodes: Mapping[str, str] | None = None,
) -> Location:
    """Merge every part into results.parquet (last write wins per key); stamp final statuses
    and, for studies on a cluster, the Ray node each trial ran on (column `node`)."""
    fs, path, parts = _parts(folder)
    target = join(folder, RESULTS_FILE)
    merged = {part: _stamp(fs, part) for part in parts}  # before reading: what gets merged
    tables = _tables(fs, path, parts)
    if not tables:
        return target
    table = pa.concat_tables(tables, promote_options="permissive")
    table = _dedupe(table)
    keys = table.column("trial_id").to_pylist()
    if statuses:
        current = table.column("status").to_pylist()
        stamped = [statuses.get(k, s) for k, s in zip(keys, current)]
        table = table.set_column(
            table.schema.get_field_index("status"), "status", pa.array(stamped)
        )
    if nodes:
        current = table.column("node").to_pylist() if "node" in table.column_names else None
        stamped = [nodes.get(k, current[i] if current else None) for i, k in enumerate(keys)]
        column = pa.array(stamped, pa.string())
        if current is None:
            table = table.append_column("node", column)
        else:
            table = table.set_column(table.schema.get_field_index("node"), "node", column)
    _write_atomic(fs, f"{path}/{RESULTS_FILE}", lambda t: pq.write_table(table, t, filesystem=fs))
    for part in parts:  # merged: a later compaction must not let their stale statuses win
        if _stamp(fs, part) != merged[part]:
            continue  # rewritten since it was read (a trial still writing): the next compaction
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(part)
    return target


def _stamp(fs: pafs.FileSystem, path: str) -> tuple[Any, int | None]:
    """A file's modification time and size: changed when a part is rewritten."""
    info = fs.get_file_info(path)
    return info.mtime_ns, info.size


def _dedupe(table: pa.Table) -> pa.Table:
    keys = list(zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS)))
    last = {k: i for i, k in enumerate(keys)}
    keep = sorted(last.values())
    table = table.take(pa.array(keep))
    order = pc.sort_indices(table, [(c, "ascending") for c in ("trial_name", "seed", "epoch")])
    return table.take(order)


def read(path: Location) -> pa.Table:
    fs, where = _fs(path)
    return pq.read_table(where, filesystem=fs)


def has_results(folder: Location) -> bool:
    fs, path, parts = _parts(folder)
    return bool(parts) or fs.get_file_info(f"{path}/{RESULTS_FILE}").type != pafs.FileType.NotFound


def read_all(folder: Location) -> pa.Table | None:
    """results.parquet plus every part not compacted yet (a killed driver leaves parts), deduped."""
    tables = _tables(*_parts(folder))
    if not tables:
        return None
    return _dedupe(pa.concat_tables(tables, promote_options="permissive"))


def download(folder: Location, names: list[str], local: Path) -> list[str]:
    """Copy the named files of a study folder (a URI) into `local`; returns those it found."""
    local.mkdir(parents=True, exist_ok=True)
    fs, path = _fs(folder)
    found = []
    for name in names:
        try:
            with fs.open_input_stream(f"{path}/{name}") as src:
                data = src.read()
        except FileNotFoundError:
            continue
        (local / name).write_bytes(data)
        found.append(name)
    return found


def finished_cells(
    folder: Location, trial_key: str, epochs: int
) -> dict[int, list[dict[str, Any]]]:
    """seed -> its rows (epoch 1..epochs) for the seeds of `trial_key` trained to the end."""
    rows = [r for r in _rows_of_key(folder, trial_key) if r["trial_key"] == trial_key]
    cells: dict[int, list[dict[str, Any]]] = {}
    for seed in {r["seed"] for r in rows}:
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["epoch"])
        if [r["epoch"] for r in mine] == list(range(1, epochs + 1)) and mine[-1]["status"] not in (
            "failed",
            "pruned",
        ):
            cells[seed] = mine
    return cells


# file path -> (its stamp when read, the trial keys it holds): every trial start looks up its
# finished cells, and a worker runs trial after trial, so each part is read once per worker
# and then again only when rewritten, instead of the whole study's table at every trial start
_KEYS: dict[str, tuple[tuple[Any, int | None], frozenset[str]]] = {}


def _rows_of_key(folder: Location, trial_key: str) -> list[dict[str, Any]]:
    """The rows of `trial_key` in results.parquet and the parts (in read_all's order, deduped)."""
    fs, path, parts = _parts(folder)
    target = f"{path}/{RESULTS_FILE}"
    files = ([target] if fs.get_file_info(target).type != pafs.FileType.NotFound else []) + parts
    tables = []
    for file in files:
        stamp = _stamp(fs, file)
        cached = _KEYS.get(file)
        table = None
        if cached is None or cached[0] != stamp:
            table = _read_or_set_aside(fs, file)  # a truncated part: set aside, not done
            if table is None:
                continue
            cached = _KEYS[file] = stamp, frozenset(table.column("trial_key").to_pylist())
        if trial_key in cached[1]:
            table = table if table is not None else _read_or_set_aside(fs, file)
            if table is not None:
                tables.append(table.filter(pc.equal(table.column("trial_key"), trial_key)))
    if not tables:
        return []
    return _dedupe(pa.concat_tables(tables, promote_options="permissive")).to_pylist()


def rows(folder: Location) -> list[dict[str, Any]]:
    """Every row of the study's table (parts not compacted yet included), as dicts."""
    table = read_all(folder)
    return [] if table is None else table.to_pylist()
