"""Tracking calls that wait for an unreachable MLflow: spooled in order, replayed later.

Once a call of a process fails after its retries, that call and every later one of the process
go, in order, to one JSON-lines file in the study's spool folder (so a run is never finished
before its last metrics arrive); the driver replays the folder at the end of the study, and
`ablate sync STUDY` does it whenever the server is back.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What the spool reads of `ablate.tracking.runs.Tracker` (which imports this module)."""

    spool_dir: str
    experiment_id: str
    parent_run_id: str


SPOOL_FILE = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
_SPOOLING: set[str] = set()  # spool folders this process writes to: later calls follow, in order


def spooled(method: Callable[..., None]) -> Callable[..., None]:
    """A logging call that, if MLflow stays unreachable, is written to the tracker's spool
    folder (one JSON line per call) for `replay` instead of failing the trial."""

    @functools.wraps(method)
    def call(self: Tracker, *args: Any, **kwargs: Any) -> None:
        if self.spool_dir in _SPOOLING:  # keep the order: once spooling, spool the rest too
            write(self, method.__name__, args, kwargs, None)
            return
        try:
            method(self, *args, **kwargs)
        except Exception as err:
            if not self.spool_dir:
                raise
            _SPOOLING.add(self.spool_dir)
            write(self, method.__name__, args, kwargs, err)

    return call


def write(
    tracker: Tracker, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], err: Exception | None
) -> None:
    """Append one call to this process's spool file."""
    folder = Path(tracker.spool_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment_id": tracker.experiment_id,
        "parent_run_id": tracker.parent_run_id,
        "op": op,
        "args": [_to_json(a) for a in args],
        "kwargs": {k: _to_json(v) for k, v in kwargs.items()},
    }
    with (folder / SPOOL_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")
    if err is not None:
        print(
            f"ablate: MLflow unreachable ({type(err).__name__}: {str(err)[:200]}); "
            f"tracking calls of this process now wait in {folder} for `ablate sync`"
        )


def stop_spooling(spool_dir: Path) -> None:
    _SPOOLING.discard(str(spool_dir))


def replay(spool_dir: Path, uri: str, tracker_type: type[Tracker]) -> tuple[int, int]:
    """Deliver spooled calls in order through `tracker_type`'s methods (the caller names it: the
    tracker imports this module); returns (delivered, still waiting). Stops at the first call
    that fails again, keeping it and everything after it for the next try."""
    files = sorted(spool_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    delivered = 0
    for number, path in enumerate(files):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            record = json.loads(line)
            method = getattr(tracker_type, record["op"]).__wrapped__
            tracker = tracker_type(uri, record["experiment_id"], record["parent_run_id"])
            try:
                args = [_from_json(a) for a in record["args"]]
                kwargs = {k: _from_json(v) for k, v in record.get("kwargs", {}).items()}
                method(tracker, *args, **kwargs)
            except Exception as err:
                print(f"ablate: {record['op']} still fails: {type(err).__name__}: {err}"[:500])
                path.write_text("\n".join(lines[index:]) + "\n")
                later = sum(len(p.read_text().splitlines()) for p in files[number + 1 :])
                return delivered, len(lines) - index + later
            delivered += 1
        path.unlink()
    return delivered, 0


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    return dict(value) if isinstance(value, Mapping) else value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    return value
