"""Retries for tracking calls: transient errors only (a lost connection, HTTP 5xx or 429, a
SQLite race), with backoff; an error that would fail again is raised at once. A SQLite store
locked by another process is waited for ($ABLATE_SQLITE_LOCK_WAIT_S, default 300 s), saying
so once, naming the file. MLflow-free: an MLflow error is recognised by the HTTP status it
carries (`get_http_status_code`)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

# SQLite under concurrent writers: a lock held too long, or two inserts of one row racing.
TRANSIENT_SQL = ("database is locked", "database is busy", "unique constraint failed")
LOCKED_SQL = ("database is locked", "database is busy")
LOCK_WAIT_ENV = "ABLATE_SQLITE_LOCK_WAIT_S"
_LOCKED: dict[str, float] = {}  # store -> when this process first found it locked


class PatientClient:
    """A client (MlflowClient) whose calls are retried with backoff when the error is transient:
    concurrent trials writing one SQLite store race (e.g. two seeds logging the same dataset),
    and servers blink. A locked SQLite store (another process holding a write transaction) is
    waited for up to `lock_wait()` seconds. Errors that would fail again (a missing run, a bad
    value) are raised at once. `store` names the store in messages."""

    ATTEMPTS, FIRST_DELAY, MAX_DELAY = 4, 0.5, 10.0

    def __init__(self, client: Any, store: str = "the MLflow store") -> None:
        self._client = client
        self._store = store

    @classmethod
    def connect(cls, make: Callable[[], Any], store: str) -> PatientClient:
        """`make()` the client under the same patience: opening a SQLite store reads it."""
        return cls(cls(None, store).call(make), store)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method
        return functools.partial(self.call, method)

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        delay, attempt = self.FIRST_DELAY, 0
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as err:
                attempt += 1
                if not self._may_retry(err, attempt):
                    raise
                time.sleep(delay)
                delay = min(2 * delay, self.MAX_DELAY)
                continue
            self._unlocked()
            return result

    def _may_retry(self, err: Exception, attempt: int) -> bool:
        if is_locked(err):
            if self._store not in _LOCKED:  # said once per process, not once per call
                _LOCKED[self._store] = time.monotonic()
                print(
                    f"ablate: {self._store} is locked by another process ({err_line(err)}); "
                    f"tracking calls wait for it up to {lock_wait():g} s (${LOCK_WAIT_ENV}), "
                    "training goes on"
                )
            return time.monotonic() - _LOCKED[self._store] < lock_wait()
        return attempt < self.ATTEMPTS and is_transient(err)

    def _unlocked(self) -> None:
        since = _LOCKED.pop(self._store, None)
        if since is not None:
            print(
                f"ablate: {self._store} is free again after {time.monotonic() - since:.0f} s; "
                "the tracking calls that waited went through"
            )


def lock_wait() -> float:
    """Seconds a call waits for a locked SQLite store before it is given up (then spooled)."""
    return float(os.environ.get(LOCK_WAIT_ENV) or 300)


def is_locked(err: BaseException) -> bool:
    """Whether `err` is a SQLite store locked (or busy) under another writer."""
    text = str(err).lower()
    return any(marker in text for marker in LOCKED_SQL)


def err_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


def is_transient(err: BaseException) -> bool:
    """Whether `err` may pass on retry: a lost connection, HTTP 5xx or 429, or a SQLite race."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    http_status = getattr(err, "get_http_status_code", None)
    if callable(http_status):  # an MlflowException: its REST client wraps lost connections as 500
        status = http_status()
        return status >= 500 or status == 429 or _sql_race(err)
    return _sql_race(err)


def _sql_race(err: BaseException) -> bool:
    text = str(err).lower()
    return any(marker in text for marker in TRANSIENT_SQL)
