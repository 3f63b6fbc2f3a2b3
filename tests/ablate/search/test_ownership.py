"""One owner per study: a live owner refuses a second launch; a dead, reused or silent one is
taken over; a lock is only ever removed by its own owner."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest

from ablate.search import ownership
from ablate.search.ownership import OWNER_FILE, Owner, StudyBusy, StudyLock


def plant(folder, **changes) -> Owner:
    """An owner.json as another launch would have written it."""
    owner = dataclasses.replace(Owner.me(), token="theirs", **changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_FILE).write_text(json.dumps(dataclasses.asdict(owner)))
    return owner


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_launch_is_refused_naming_the_owner(tmp_path):
    with StudyLock(tmp_path / "s", "s"):
        before = (tmp_path / "s" / OWNER_FILE).read_text()
        with pytest.raises(StudyBusy) as busy:
            StudyLock(tmp_path / "s", "s").acquire()
        assert (tmp_path / "s" / OWNER_FILE).read_text() == before  # nothing changed
    message = str(busy.value)
    assert "study 's' is already running" in message
    assert f"pid {Owner.me().pid} on {Owner.me().host}" in message
    assert busy.value.exit_code == 2
    assert not (tmp_path / "s" / OWNER_FILE).exists()  # released on exit
    with StudyLock(tmp_path / "s", "s"):  # and free again
        pass


def test_a_live_owner_on_this_machine_holds_the_study(tmp_path):
    plant(tmp_path, heartbeat=0.0)  # an old heartbeat does not matter while its pid lives
    with pytest.raises(StudyBusy):
        StudyLock(tmp_path, "s").acquire()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"pid": None}, id="its process is gone"),
        pytest.param({"pid_start": "1"}, id="its pid belongs to another process now"),
        pytest.param({"host": "elsewhere", "boot_id": "x", "heartbeat": 0.0}, id="silent host"),
    ],
)
def test_a_stale_lock_is_taken_over(tmp_path, changes):
    if changes.get("pid", 0) is None:
        changes["pid"] = dead_pid()
    stale = plant(tmp_path, **changes)
    assert stale.stale_reason() is not None
    with StudyLock(tmp_path, "s") as lock:
        held = json.loads((tmp_path / OWNER_FILE).read_text())
        assert held["token"] == lock.owner.token
    assert not list(tmp_path.glob("owner.json*"))  # nothing left behind


def test_a_host_that_still_beats_holds_the_study(tmp_path):
    plant(tmp_path, host="elsewhere", boot_id="x", pid=1, heartbeat=time.time())
    with pytest.raises(StudyBusy) as busy:
        StudyLock(tmp_path, "s").acquire()
    assert "on elsewhere" in str(busy.value)


def test_an_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / OWNER_FILE).write_text('{"host": "half a fi')
    with StudyLock(tmp_path, "s"):
        pass


def test_release_never_removes_another_owners_lock(tmp_path):
    lock = StudyLock(tmp_path, "s")
    lock.acquire()
    plant(tmp_path)  # presumed dead and taken over by another launch meanwhile
    lock.release()
    assert json.loads((tmp_path / OWNER_FILE).read_text())["token"] == "theirs"


def test_the_heartbeat_refreshes_the_lock_and_stops_when_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "HEARTBEAT_S", 0.01)
    lock = StudyLock(tmp_path, "s")
    lock.acquire()
    written = (tmp_path / OWNER_FILE).read_text()
    first = lock.owner.heartbeat
    deadline = time.monotonic() + 30
    while ownership.read_owner(tmp_path).heartbeat == first:
        assert time.monotonic() < deadline, "no heartbeat written"
        time.sleep(0.01)
    assert (tmp_path / OWNER_FILE).read_text() == written  # the beat has a file of its own
    plant(tmp_path)  # taken over meanwhile; however the beats interleave, it stays theirs
    lock._beat.join(timeout=30)
    assert not lock._beat.is_alive()  # it saw the new owner and stopped
    assert json.loads((tmp_path / OWNER_FILE).read_text())["token"] == "theirs"
    lock.release()
    assert json.loads((tmp_path / OWNER_FILE).read_text())["token"] == "theirs"
    assert not list(tmp_path.glob("*.beat"))  # its heartbeat file went with it
