"""Shared fixtures: a tiny random open_clip backbone, the digits task, an isolated cwd."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch

import trainers
from trainers.backbone import Backbone, load
from trainers.configs import BackboneConfig, DataConfig
from trainers.data import Task, load_task

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    return load(BackboneConfig(model="ablate-tiny", pretrained=None))


@pytest.fixture(scope="session")
def digits() -> Task:
    return load_task(DataConfig(name="digits"))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, with MLflow's default store there, not in the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for every slow test (2 CPUs, like CI)."""
    import ray

    from ablate.search.tuning import connect

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    connect(None)
    yield ray
    ray.shutdown()


__all__ = ["REPO", "trainers"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """`folder` on a tmpfs of `size` (e.g. 2m): a real disk that fills up. Needs root; the test
    is skipped, saying why, where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(folder)], check=True)
