"""Tracking calls off the training thread: one background thread per process makes them in the
order they were sent, so an epoch does not wait for SQLite or a tracking server.

The thread is not a daemon: a worker process that exits (Ray ends the actor of a trial its
scheduler stopped) first makes the calls already sent. A kill -9 can lose the calls of the last
epoch; a resumed trial sends them again (MLflow keeps one copy of a metric logged twice with the
same key, step, value and timestamp). Calls keep their retries and spooling (`spooled`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_LANE: list[ThreadPoolExecutor] = []  # one per process: a reused worker's trials share it


def _lane() -> ThreadPoolExecutor:
    if not _LANE:
        _LANE.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="ablate-tracking"))
    return _LANE[0]


class Outbox:
    """The calls one trial sent and has not waited for."""

    def __init__(self) -> None:
        self._sent: list[Future] = []

    def send(self, call: Callable[..., Any], *args: Any) -> None:
        self._sent.append(_lane().submit(call, *args))

    def wait(self) -> None:
        """Block until every call sent so far is made; the first error is raised."""
        sent, self._sent = self._sent, []
        errors = [f.exception() for f in sent]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
