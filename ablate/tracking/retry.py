"""Retries for tracking calls: transient errors only (a lost connection, HTTP 5xx or 429, a
SQLite race), with backoff; an error that would fail again is raised at once. MLflow-free: an
MLflow error is recognised by the HTTP status it carries (`get_http_status_code`)."""

from __future__ import annotations

import time
from typing import Any

# SQLite under concurrent writers: a lock held too long, or two inserts of one row racing.
TRANSIENT_SQL = ("database is locked", "database is busy", "unique constraint failed")


class PatientClient:
    """A client (MlflowClient) whose calls are retried with backoff when the error is transient:
    concurrent trials writing one SQLite store race (e.g. two seeds logging the same dataset),
    and servers blink. Errors that would fail again (a missing run, a bad value) are raised at
    once."""

    ATTEMPTS, FIRST_DELAY, MAX_DELAY = 4, 0.5, 10.0
    # for calls nothing can go on without (a trial's runs: find or create them): about 3 min,
    # so a server restarting does not fail the trials that start meanwhile
    WAIT_ATTEMPTS = 20

    def __init__(self, client: Any, attempts: int | None = None) -> None:
        self._client = client
        self._attempts = attempts or self.ATTEMPTS

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def patient(*args: Any, **kwargs: Any) -> Any:
            delay = self.FIRST_DELAY
            for attempt in range(self._attempts):
                try:
                    return method(*args, **kwargs)
                except Exception as err:
                    if attempt == self._attempts - 1 or not is_transient(err):
                        raise
                    time.sleep(delay)
                    delay = min(2 * delay, self.MAX_DELAY)
            raise AssertionError("unreachable")

        return patient


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
