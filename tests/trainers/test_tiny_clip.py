"""The shipped pretrained tiny CLIP, its base-to-new tasks, and the script that pretrains it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from trainers import TrainConfig, TrialConfig, fit
from trainers import backbone as backbones
from trainers.backbone import Backbone, BackboneError, load
from trainers.configs import BackboneConfig, DataConfig, OptimConfig
from trainers.data import Task, list_datasets, load_task
from trainers.data.tiny_tasks import PRESETS, TaskFileError, load_file
from trainers.methods.coop import CoOpConfig
from trainers.methods.zeroshot import ZeroShotConfig

SHIPPED = BackboneConfig(model="ablate-tiny-clip", pretrained="shipped")
CARD = REPO / "trainers" / "pretrained" / "ablate-tiny-clip.md"


@pytest.fixture(scope="session")
def tiny_clip() -> Backbone:
    return load(SHIPPED)


@pytest.fixture(scope="session")
def fashion() -> Task:
    return load_task(DataConfig(name="tiny_fashion"))


def card() -> dict:
    return yaml.safe_load(CARD.read_text().split("---\n")[1])


def trial(method, task: str, epochs: int = 1, **optim) -> TrialConfig:
    return TrialConfig(
        method=method,
        dataset=DataConfig(name=task, template=PRESETS[task]["template"], batch_size=16),
        backbone=SHIPPED,
        optim=OptimConfig(**optim),
        train=TrainConfig(epochs=epochs, device="cpu"),
        seed=1,
    )


def test_shipped_checkpoint_loads_and_its_hash_matches(tiny_clip):
    filename, expected = backbones.SHIPPED_WEIGHTS["ablate-tiny-clip"]
    path = backbones.PRETRAINED_DIR / filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected == card()["sha256"]
    assert path.stat().st_size <= 25e6
    assert tiny_clip.dims.image_size == 28 and tiny_clip.dims.text_layers == 4
    assert not any(p.requires_grad for p in tiny_clip.model.parameters())


def test_tasks_are_registered_base_to_new():
    for name in PRESETS:
        assert name in list_datasets()
        task = load_task(DataConfig(name=name))
        assert len(task.classnames) == 10 and len(task.base_classes) == 5
        for split in (task.train, task.val, task.test):
            assert split.images.shape[1:] == (3, 28, 28)
            assert float(split.images.min()) >= 0 and float(split.images.max()) <= 1
            assert sorted(set(split.labels.tolist())) == list(range(10))


def test_zero_shot_equals_the_model_card(tiny_clip, fashion):
    metrics = list(fit(trial(ZeroShotConfig(), "tiny_fashion"), tiny_clip, fashion))[-1].metrics
    figures = card()["zero_shot"]["tasks"]["tiny_fashion"]
    for key in ("base", "new", "hm"):
        assert metrics[f"test/{key}"] == pytest.approx(figures[key], abs=0.5)


def test_coop_16_shots_beats_zero_shot_base_accuracy(tiny_clip, fashion):
    zero = list(fit(trial(ZeroShotConfig(), "tiny_fashion"), tiny_clip, fashion))[-1].metrics
    coop = trial(CoOpConfig(prompt_length=4), "tiny_fashion", epochs=5, lr=0.1, warmup_epochs=0)
    tuned = list(fit(coop, tiny_clip, fashion))[-1].metrics
    assert tuned["test/base"] > zero["test/base"] + 2


def test_pretraining_script_runs_end_to_end(tmp_path: Path):
    sources = "fashion" if Path("/usr/share/datasets/fashion-mnist").is_dir() else "sklearn-digits"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "pretrain_tiny_clip.py"),
        "--max-steps",
        "3",
        "--batch-size",
        "32",
        "--eval-limit",
        "64",
        "--sources",
        sources,
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ablate-tiny-clip.safetensors").is_file()
    meta = yaml.safe_load((tmp_path / "ablate-tiny-clip.md").read_text().split("---\n")[1])
    assert meta["steps"] == 3 and set(meta["zero_shot"]["held_out_10way"]) == {sources}
    assert "# ablate-tiny-clip" in out.stdout


def test_a_missing_or_corrupt_checkpoint_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(backbones, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(BackboneError, match="missing"):
        load(SHIPPED)
    filename, _ = backbones.SHIPPED_WEIGHTS["ablate-tiny-clip"]
    (tmp_path / filename).write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="corrupt: SHA-256"):
        load(SHIPPED)
    with pytest.raises(BackboneError, match="no shipped weights"):
        load(BackboneConfig(model="ablate-tiny", pretrained="shipped"))


def test_a_malformed_task_file_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "bad.npz"
    with pytest.raises(TaskFileError, match="bad.npz: task file not found"):
        load_file(path, "bad")
    path.write_bytes(b"garbage")
    with pytest.raises(TaskFileError, match="bad.npz: not a readable"):
        load_file(path, "bad")
    good = dict(np.load(REPO / "trainers/data/tiny_clip/tiny_fashion.npz"))
    np.savez(path, **{k: v for k, v in good.items() if k != "val_labels"})
    with pytest.raises(TaskFileError, match="bad.npz: missing 'val_images' or 'val_labels'"):
        load_file(path, "bad")
    np.savez(path, **(good | {"test_labels": good["test_labels"] + 10}))
    with pytest.raises(TaskFileError, match="bad.npz: 'test_labels' outside 0..9"):
        load_file(path, "bad")
    np.savez(path, **(good | {"train_images": good["train_images"].astype(np.float32)}))
    with pytest.raises(TaskFileError, match="bad.npz: 'train_images' must be uint8"):
        load_file(path, "bad")
