"""The tracking outbox: calls made off the caller's thread, in order, errors raised on wait,
and calls in flight made before the process exits (what a stopped trial's worker relies on)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ablate.tracking import Outbox

REPO = Path(__file__).resolve().parents[3]


def test_calls_are_made_in_order_by_another_thread():
    outbox, made = Outbox(), []
    for number in range(20):
        outbox.send(lambda n: made.append((n, threading.current_thread().name)), number)
    outbox.wait()
    assert [n for n, _ in made] == list(range(20))
    assert {name for _, name in made} != {threading.current_thread().name}


def test_wait_raises_the_first_error_once():
    def fail(message: str) -> None:
        raise ValueError(message)

    outbox = Outbox()
    outbox.send(fail, "first")
    outbox.send(fail, "second")
    with pytest.raises(ValueError, match="first"):
        outbox.wait()
    outbox.wait()  # already reported


def test_calls_in_flight_are_made_before_the_process_exits(tmp_path):
    target = tmp_path / "made"
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from ablate.tracking.outbox import Outbox\n"
        "def slow(path):\n"
        "    time.sleep(0.5)\n"
        "    Path(path).write_text('made')\n"
        f"Outbox().send(slow, {str(target)!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "made"
