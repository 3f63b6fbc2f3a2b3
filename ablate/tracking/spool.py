"""Tracking calls that wait for an unreachable MLflow: spooled in order, replayed later.

Once a call of a process fails after its retries, that call and every later one of the process
go, in order, to one JSON-lines file in the study's spool folder (so a run is never finished
before its last metrics arrive); the driver replays the folder at the end of the study, and
`ablate sync STUDY` does it whenever the server is back.

A run created while MLflow is unreachable gets a stand-in id (`spooled-...`) that the trial uses
like a run id; the replay creates the run and sends the calls naming the stand-in to it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

STAND_IN = "spooled-"  # how the id of a run that waits to be created begins


class Tracker(Protocol):
    """What the spool reads of `ablate.tracking.runs.Tracker` (which imports this module)."""

    spool_dir: str
    experiment_id: str
    parent_run_id: str

    def spooled_run(self, stand_in: str) -> str | None: ...


SPOOL_FILE = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
_SPOOLING: set[str] = set()  # spool folders this process writes to: later calls follow, in order
RETRY_LIVE_S = 30.0  # how often, at most, a spooling process tries MLflow again
_TRIED: dict[str, float] = {}  # spool folder -> when this process last tried MLflow again


class Unresolved(LookupError):
    """A call names a run whose creation has not been delivered yet (perhaps another file's)."""


def spooled(method: Callable[..., Any]) -> Callable[..., Any]:
    """A logging call that, if MLflow stays unreachable, is written to the tracker's spool
    folder (one JSON line per call) for `replay` instead of failing the trial."""

    @functools.wraps(method)
    def call(self: Tracker, *args: Any, **kwargs: Any) -> None:
        if not _made_live(self, method, args, kwargs)[0]:
            write(self, method.__name__, args, kwargs)

    return call


def spooled_creation(method: Callable[..., str]) -> Callable[..., str]:
    """A call that creates a run and returns its id: if MLflow stays unreachable, it is spooled
    and a stand-in id is returned; the replay calls it again with `spooled_as=` the stand-in."""

    @functools.wraps(method)
    def call(self: Tracker, *args: Any, **kwargs: Any) -> str:
        made, run_id = _made_live(self, method, args, kwargs)
        if made:
            return run_id
        stand_in = f"{STAND_IN}{uuid.uuid4().hex}"
        write(self, method.__name__, args, kwargs | {"spooled_as": stand_in})
        return stand_in

    return call


def _made_live(
    tracker: Tracker, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """(True, its result) once the call is made; (False, None) when it must be spooled: the
    process spools already or the call names a run that waits (keeping the order), or MLflow
    stays unreachable now (the process then spools from here on)."""
    if spooling(tracker) or _names_stand_in(args, kwargs):
        return False, None
    try:
        return True, method(tracker, *args, **kwargs)
    except Exception as err:
        if not tracker.spool_dir:
            raise
        start_spooling(tracker, err)
        return False, None


def is_stand_in(run_id: str) -> bool:
    """Whether `run_id` stands in for a run that waits in the spool to be created."""
    return run_id.startswith(STAND_IN)


def spooling(tracker: Tracker) -> bool:
    """Whether this process already spools the tracker's calls (its later calls follow)."""
    return bool(tracker.spool_dir) and tracker.spool_dir in _SPOOLING


def start_spooling(tracker: Tracker, err: Exception) -> None:
    """From now on this process spools its calls to the tracker's folder, in order."""
    _SPOOLING.add(tracker.spool_dir)
    print(
        f"ablate: MLflow unreachable ({type(err).__name__}: {str(err)[:200]}); "
        f"tracking calls of this process now wait in {tracker.spool_dir} for `ablate sync`"
    )


def write(tracker: Tracker, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
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


def stop_spooling(spool_dir: Path) -> None:
    _SPOOLING.discard(str(spool_dir))


def retry_due(tracker: Tracker) -> bool:
    """Whether this process spools and may try MLflow again (at most every RETRY_LIVE_S)."""
    if not spooling(tracker):
        return False
    now = time.monotonic()
    if now - _TRIED.get(tracker.spool_dir, -RETRY_LIVE_S) < RETRY_LIVE_S:
        return False
    _TRIED[tracker.spool_dir] = now
    return True


def deliver_own(tracker: Tracker, tracker_type: type[Tracker]) -> None:
    """Deliver this process's own spool file; once all of it is, the process's calls go to
    MLflow again (a call naming a run another process's file creates keeps it spooling)."""
    path = Path(tracker.spool_dir) / SPOOL_FILE
    sent = 0
    if path.exists():
        sent, _ = _replay_file(path, tracker.uri, tracker_type, {})
        if path.exists():
            return
    stop_spooling(Path(tracker.spool_dir))
    print(f"ablate: MLflow answers again; delivered the {sent} calls this process had spooled")


def replay(spool_dir: Path, uri: str, tracker_type: type[Tracker]) -> tuple[int, int]:
    """Deliver spooled calls through `tracker_type`'s methods (the caller names it: the tracker
    imports this module); returns (delivered, still waiting). Each file is delivered in order;
    a file whose next call names a run another file creates waits for that file. Stops at the
    first call that fails otherwise, keeping it and everything after it for the next try."""
    files = sorted(spool_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    runs: dict[str, str] = {}  # stand-in -> run id, as they are created or found
    delivered, progress = 0, True
    while files and progress:
        progress, waiting = False, []
        for path in files:
            sent, failure = _replay_file(path, uri, tracker_type, runs)
            delivered += sent
            if failure:
                print(f"ablate: {failure}"[:500])
                return delivered, _waiting(files)
            progress = progress or sent > 0
            if path.exists():
                waiting.append(path)
        files = waiting
    return delivered, _waiting(files)


def _waiting(files: list[Path]) -> int:
    """How many calls the spool files still hold."""
    return sum(len(p.read_text().splitlines()) for p in files if p.exists())


def _replay_file(
    path: Path, uri: str, tracker_type: type[Tracker], runs: dict[str, str]
) -> tuple[int, str]:
    """Deliver one spool file's calls in order: how many, and why not all ("" if none failed).
    The file keeps what is left when a call fails again or waits for another file's run; it is
    removed once delivered."""
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        record = json.loads(line)
        tracker = tracker_type(uri, record["experiment_id"], record["parent_run_id"])
        failure = ""
        try:
            args = [_resolved(_from_json(a), tracker, runs) for a in record["args"]]
            kwargs = {
                k: v if k == "spooled_as" else _resolved(_from_json(v), tracker, runs)
                for k, v in record.get("kwargs", {}).items()
            }
            result = getattr(tracker_type, record["op"]).__wrapped__(tracker, *args, **kwargs)
        except Unresolved:  # the run is another file's to create: this file waits for it
            pass
        except Exception as err:
            failure = f"{record['op']} still fails: {type(err).__name__}: {err}"
        else:
            if "spooled_as" in kwargs:
                runs[kwargs["spooled_as"]] = result
            continue
        path.write_text("\n".join(lines[index:]) + "\n")
        return index, failure
    path.unlink()
    return len(lines), ""


def _resolved(value: Any, tracker: Tracker, runs: dict[str, str]) -> Any:
    """`value` with the stand-in ids it names replaced by their runs' ids (a stand-in created
    by an earlier replay is found by the tag it gave its run)."""
    if isinstance(value, dict):
        return {k: _resolved(v, tracker, runs) for k, v in value.items()}
    if not (isinstance(value, str) and is_stand_in(value)):
        return value
    if value not in runs:
        found = tracker.spooled_run(value)
        if found is None:
            raise Unresolved(value)
        runs[value] = found
    return runs[value]


def _names_stand_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call names a run that waits to be created (it must wait behind it)."""
    values = [*args, *kwargs.values()]
    values += [v for m in values if isinstance(m, Mapping) for v in m.values()]
    return any(isinstance(v, str) and is_stand_in(v) for v in values)


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    return dict(value) if isinstance(value, Mapping) else value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    return value
