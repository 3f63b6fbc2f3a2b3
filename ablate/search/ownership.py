"""One owner per study: `ablate search` holds `owner.json` in the study folder while it runs.

A second launch of the same study (another terminal, a retried job) is refused with who holds
it. The owner writes its host, machine boot id, pid and the pid's start time, and refreshes a
heartbeat every HEARTBEAT_S in a file of its own (`owner.json.<token>.beat`): a heartbeat never
rewrites owner.json, so an owner presumed dead cannot overwrite the launch that took over. A
lock is stale, and is taken over, when its process is gone on this machine (pid dead, or reused
by another process: a different start time), or when a process on another machine has missed
its heartbeat for STALE_AFTER_S (shared storage, a driver on a head node that died). Local and
NFS folders take the lock atomically (O_EXCL); an object store has no exclusive create, so
there two launches within a second of each other can both start (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ablate import results
from ablate.errors import ConfigError

OWNER_FILE = "owner.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 4 * HEARTBEAT_S


class StudyBusy(ConfigError):
    """The study is running under another `ablate search` (exit 2, nothing written)."""


@dataclass
class Owner:
    host: str
    boot_id: str
    pid: int
    pid_start: str  # the pid's start time as the kernel counts it: a reused pid differs
    since: float  # epoch seconds
    heartbeat: float
    token: str

    @classmethod
    def me(cls) -> Owner:
        now = time.time()
        pid = os.getpid()
        return cls(
            socket.gethostname(),
            boot_id(),
            pid,
            process_start(pid) or "",
            now,
            now,
            uuid.uuid4().hex,
        )

    def stale_reason(self, now: float | None = None) -> str | None:
        """Why this lock no longer holds the study, or None while its owner lives."""
        if self.boot_id == boot_id() and self.host == socket.gethostname():
            started = process_start(self.pid)
            if started == "":
                return f"process {self.pid} is gone"
            if started and self.pid_start and started != self.pid_start:
                return f"process {self.pid} is gone (its pid now belongs to another process)"
            return None
        silent = (now or time.time()) - self.heartbeat
        if silent > STALE_AFTER_S:
            return f"no heartbeat from {self.host} for {silent:.0f} s"
        return None

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"pid {self.pid} on {self.host}, since {since} "
            f"(last heartbeat {max(0.0, time.time() - self.heartbeat):.0f} s ago)"
        )


def boot_id() -> str:
    """This machine's boot id (Linux), so a pid is only compared on the machine that owns it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of `pid` ("" when no such process); None where it cannot be known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22: starttime, in clock ticks
    except FileNotFoundError:
        return ""
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return None  # alive, start time unknown


def read_owner(study_dir: results.Location) -> Owner | None:
    """The study's owner with its last heartbeat, or None (no owner.json, or a torn one)."""
    text = results.read_text(study_dir, OWNER_FILE)
    if not text:
        return None
    try:
        owner = Owner(**json.loads(text))
    except (ValueError, TypeError):
        return None  # a torn or foreign file: nobody can own the study through it
    with contextlib.suppress(ValueError, TypeError):
        owner.heartbeat = max(owner.heartbeat, float(results.read_text(study_dir, _beat(owner))))
    return owner


def _beat(owner: Owner) -> str:
    """The name of the owner's heartbeat file."""
    return f"{OWNER_FILE}.{owner.token}.beat"


class StudyLock:
    """Held while a study runs: `with StudyLock(study_dir, name): ...`."""

    def __init__(self, study_dir: results.Location, study: str) -> None:
        self.study_dir, self.study = study_dir, study
        self.owner = Owner.me()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        results.makedirs(self.study_dir)
        for _ in range(3):  # a stale lock moved away by us or by a racing launch: try again
            if self._create():
                self._beat = threading.Thread(target=self._heartbeat, daemon=True)
                self._beat.start()
                return
            held = read_owner(self.study_dir)
            if held is not None and held.stale_reason() is None:
                raise StudyBusy(self._busy_message(held))
            self._retire(held)
        raise StudyBusy(f"could not take {self._path()}: another launch keeps taking it")

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        held = read_owner(self.study_dir)
        if held is not None and held.token == self.owner.token:
            results.remove(self.study_dir, OWNER_FILE)
        results.remove(self.study_dir, _beat(self.owner))

    def _create(self) -> bool:
        text = json.dumps(asdict(self.owner))
        if results.is_uri(self.study_dir):  # no exclusive create on object stores
            if results.read_text(self.study_dir, OWNER_FILE):
                return False
            results.write_text(self.study_dir, OWNER_FILE, text)
            return True
        try:
            fd = os.open(self._path(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return True

    def _retire(self, held: Owner | None) -> None:
        """Move a stale (or unreadable) lock aside; a rename succeeds for one launch only."""
        if held is not None:
            results.remove(self.study_dir, _beat(held))
        if results.is_uri(self.study_dir):
            results.remove(self.study_dir, OWNER_FILE)
            return
        aside = Path(f"{self._path()}.stale-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._path(), aside)
            aside.unlink()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            held = read_owner(self.study_dir)
            if held is None or held.token != self.owner.token:
                return  # taken over (we were presumed dead)
            self.owner.heartbeat = time.time()
            with contextlib.suppress(OSError):  # our own file: the new owner's stays as it is
                results.write_text(self.study_dir, _beat(self.owner), repr(self.owner.heartbeat))

    def _path(self) -> str:
        return str(results.join(self.study_dir, OWNER_FILE))

    def _busy_message(self, held: Owner) -> str:
        return (
            f"study {self.study!r} is already running: {held.describe()}.\n"
            "  Wait for it to finish, or stop it (Ctrl-C, or `kill "
            f"{held.pid}` on {held.host}) and run the same command again to resume.\n"
            f"  If that process is gone and its machine cannot be reached, the lock "
            f"{self._path()} expires {STALE_AFTER_S:.0f} s after its last heartbeat."
        )
