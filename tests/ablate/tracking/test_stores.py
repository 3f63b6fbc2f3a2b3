"""Where tracking goes, read from a URI alone (no MLflow)."""

from __future__ import annotations

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
