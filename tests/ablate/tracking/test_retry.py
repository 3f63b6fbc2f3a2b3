"""Retries in the MLflow seam: transient errors are retried, permanent ones raised at once."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    REQUEST_LIMIT_EXCEEDED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from ablate.tracking import retry


class _Flaky:
    """A client whose `get_run` raises `error` `failures` times, then answers."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def get_run(self, run_id: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return run_id


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.time, "sleep", lambda _: None)


@pytest.mark.parametrize("code", [RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE])
def test_permanent_error_is_raised_at_once(no_sleep: None, code: int) -> None:
    flaky = _Flaky(MlflowException("no such run", error_code=code), failures=1)
    with pytest.raises(MlflowException):
        retry.PatientClient(flaky).get_run("r1")  # type: ignore[arg-type]
    assert flaky.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        MlflowException("db", error_code=TEMPORARILY_UNAVAILABLE),
        MlflowException("slow down", error_code=REQUEST_LIMIT_EXCEEDED),
        MlflowException("API request to http://x failed with exception ConnectionError"),
        ConnectionError("refused"),
        RuntimeError("(sqlite3.OperationalError) database is locked"),
    ],
)
def test_transient_error_is_retried(no_sleep: None, error: Exception) -> None:
    flaky = _Flaky(error, failures=2)
    assert retry.PatientClient(flaky).get_run("r1") == "r1"  # type: ignore[arg-type]
    assert flaky.calls == 3


def test_transient_error_gives_up_after_the_last_attempt(no_sleep: None) -> None:
    flaky = _Flaky(ConnectionError("refused"), failures=99)
    with pytest.raises(ConnectionError):
        retry.PatientClient(flaky).get_run("r1")  # type: ignore[arg-type]
    assert flaky.calls == retry.PatientClient.ATTEMPTS


class _Writer:
    """A client whose calls write one row to a real SQLite file (no busy wait of its own)."""

    def __init__(self, path: str) -> None:
        self.path, self.calls = path, 0

    def log(self, value: int) -> int:
        import sqlite3

        self.calls += 1
        with sqlite3.connect(self.path, timeout=0.05) as db:
            db.execute("insert into t values (?)", (value,))
        return value


def _locked_store(tmp_path, seconds: float):
    """A SQLite file another connection holds BEGIN EXCLUSIVE on for `seconds`."""
    import sqlite3
    import threading

    path = str(tmp_path / "mlflow.db")
    sqlite3.connect(path).execute("create table t (v integer)").connection.commit()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(seconds, lambda: holder.execute("COMMIT")).start()
    return path


def test_a_locked_sqlite_store_is_waited_for_and_the_file_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(retry.LOCK_WAIT_ENV, "30")
    monkeypatch.setattr(retry.PatientClient, "FIRST_DELAY", 0.05)
    writer = _Writer(_locked_store(tmp_path, seconds=1.5))
    client = retry.PatientClient(writer, f"the MLflow store {tmp_path / 'mlflow.db'}")
    assert client.log(7) == 7  # type: ignore[attr-defined]
    assert writer.calls > retry.PatientClient.ATTEMPTS  # more than a transient error gets
    out = capsys.readouterr().out
    assert f"the MLflow store {tmp_path / 'mlflow.db'} is locked by another process" in out
    assert "is free again" in out


def test_a_lock_held_past_the_wait_is_given_up(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv(retry.LOCK_WAIT_ENV, "0.3")
    monkeypatch.setattr(retry, "_LOCKED", {})
    writer = _Writer(_locked_store(tmp_path, seconds=3))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry.PatientClient(writer, "the store").log(1)  # type: ignore[attr-defined]
