"""Where tracking goes, read from a URI alone (no MLflow), and a local store opened by one
process at a time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ablate.tracking import stores


def test_local_stores_have_a_path_and_a_server_has_none() -> None:
    assert stores.local_store_path("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert stores.local_store_path("file:///abs/mlruns") == Path("/abs/mlruns")
    assert stores.local_store_path("http://mlflow:5000") is None
    assert stores.is_local_store("sqlite:///x.db") and not stores.is_local_store("http://m:5000")


def test_a_sqlite_stores_artifacts_live_beside_it_under_a_safe_name(tmp_path: Path) -> None:
    home = stores.artifact_home(f"sqlite:///{tmp_path}/mlflow.db", "../my study")
    assert home == str(tmp_path.resolve() / "mlruns" / "_my_study")
    assert stores.artifact_home("http://mlflow:5000", "s") is None
    assert stores.safe_name("...") == "artifact"


OPEN_WHEN_TOLD = """\
import pathlib, sys, time
from ablate.tracking import check_reachable
go = pathlib.Path(sys.argv[2])
while not go.exists():  # every process imported: they open the store together
    time.sleep(0.01)
print(repr(check_reachable(sys.argv[1])))
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_find_it(tmp_path: Path) -> None:
    """Two studies launched together in a new folder, or a second launch of one: each opens
    the new store, and MLflow creating its tables twice at once failed all but one."""
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, uri, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.5)  # not needed for the result: only makes the overlap likelier
    go.touch()
    answers = [p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in procs]
    assert answers == ["None"] * 4
    with stores.one_opener_at_a_time(uri):  # the lock is free again: every opener let go
        pass
