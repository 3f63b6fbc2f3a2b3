"""Where tracking goes, without MLflow: the default store, local stores' paths, the artifact
folder beside a SQLite store, and the MLflow UI (its command line and links into it)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else MLflow's own default: SQLite `mlflow.db` in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) of a local tracking store; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))  # sqlite:////abs/mlflow.db: /abs/...
    if uri.startswith("file:"):
        return Path(urllib.parse.urlsplit(uri).path)
    return Path(uri) if "://" not in uri else None


@contextlib.contextmanager
def one_opener_at_a_time(uri: str) -> Iterator[None]:
    """While a local SQLite store is opened, no other process on this machine opens it.

    Opening a new store creates its tables (MLflow's migrations, run from the first schema);
    two processes doing so at once fail ("table ... already exists", alembic's "expected to
    match one row"). Two studies launched together in a new folder, or a second launch of one,
    do that. The lock is the store's folder's (flock, released when the
    process ends however it ends), so no file is added beside the store."""
    path = local_store_path(uri) if uri.startswith("sqlite:///") else None
    if path is None or not path.parent.is_dir():
        yield
        return
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a filesystem without locks: open as before
            fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # and the lock with it


def safe_name(name: str) -> str:
    """An artifact file name that cannot leave its folder."""
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return clean or "artifact"


def artifact_home(uri: str, experiment: str) -> str | None:
    """Where a SQLite store's experiment keeps its artifacts: beside the store, in mlruns/ of
    its folder, wherever the driver runs (MLflow's default is ./mlruns of the driver's cwd, and
    a Ray job's driver runs in a temporary copy of the project). None: the store's default."""
    path = local_store_path(uri) if uri.startswith("sqlite:///") else None
    return str(path.resolve().parent / "mlruns" / safe_name(experiment)) if path else None


# ---- the MLflow UI ------------------------------------------------------------------------------
def ui_links(base_url: str, experiment_id: str, run_id: str) -> list[str]:
    base = base_url.rstrip("/")
    return [
        f"experiment: {base}/#/experiments/{experiment_id}/runs",
        f"study run:  {base}/#/experiments/{experiment_id}/runs/{run_id}",
    ]


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow ui` on a local store (artifacts served from beside it)."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri, "--host", host, "--port", str(port),
    ]  # fmt: skip
