"""`ablate data prepare` writes a CoOp-style split file for class-folder downloads and converts
Parquet fusion manifests; `ablate data check` covers the ImageNet variants and fusion manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainers.test_datasets import SIZE, cli, write_image
from tests.trainers.test_fusion import SNLI, make_fusion
from tests.trainers.test_protocols import make_variant
from trainers.configs import DataConfig
from trainers.data import images, load_task
from trainers.data.splits import make_split


@pytest.fixture(autouse=True)
def small_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "CACHE_SIZE", SIZE)
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def class_folders(folder: Path, counts: dict[str, int]) -> None:
    for label, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(folder / name / f"{name}_{i:04d}.jpg", label, i)


def test_make_split_is_coops_procedure_and_deterministic(tmp_path):
    class_folders(tmp_path, {"SeaLake": 10, "Forest": 7, "AnnualCrop": 3})
    split = make_split("eurosat", tmp_path)
    assert split == make_split("eurosat", tmp_path)
    assert split != make_split("eurosat", tmp_path, seed=2)
    sizes = {s: [sum(e[1] == k for e in split[s]) for k in range(3)] for s in split}
    # per class round(50 %) train, round(20 %) val, the rest test; classes sorted by folder
    assert sizes == {"train": [2, 4, 5], "val": [1, 1, 2], "test": [0, 2, 3]}
    names = {e[1]: e[2] for s in split.values() for e in s}
    assert names == {0: "Annual Crop Land", 1: "Forest", 2: "Sea or Lake"}  # CoOp's names
    assert split["train"][0][0].startswith("AnnualCrop/AnnualCrop_")
    every = [e[0] for s in split.values() for e in s]
    assert len(every) == len(set(every)) == 20


def test_prepare_links_the_download_and_writes_the_split(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    def fake_dtd(root: str, download: bool) -> None:  # what torchvision's DTD leaves on disk
        class_folders(Path(root) / "dtd" / "dtd" / "images", {"banded": 4, "dotted": 6})

    monkeypatch.setattr(torchvision.datasets, "DTD", fake_dtd)
    assert cli(["data", "prepare", "dtd", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    split_file = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    assert f"wrote {split_file}: 5 / 2 / 3 train / val / test images" in out
    assert (tmp_path / "dtd" / "images").is_symlink()
    assert "dtd: ok, 2 classes, 5 train / 2 val / 3 test images" in out
    task = load_task(DataConfig(name="dtd", root=str(tmp_path), shots=1))
    assert task.classnames == ["banded", "dotted"] and len(task.test) == 3
    split_file.write_text(json.dumps(json.loads(split_file.read_text())))  # kept on a rerun
    assert cli(["data", "prepare", "dtd", "--root", str(tmp_path)]) == 0
    assert f"kept the split file {split_file}" in capsys.readouterr().out


def test_prepare_names_a_download_whose_layout_it_does_not_know(tmp_path, monkeypatch, capsys):
    """No dangling link and no traceback when torchvision leaves another layout."""
    import torchvision.datasets

    def other_layout(root: str, download: bool) -> None:
        class_folders(Path(root) / "dtd" / "somewhere_else", {"banded": 4})

    monkeypatch.setattr(torchvision.datasets, "DTD", other_layout)
    assert cli(["data", "prepare", "dtd", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found after torchvision's download" in err and "by hand" in err
    assert not (tmp_path / "dtd" / "images").is_symlink()
    # a dangling link left by an older version is replaced once the download is right
    (tmp_path / "dtd" / "images").symlink_to("nowhere", target_is_directory=True)
    images = tmp_path / "dtd" / "torchvision" / "dtd" / "dtd" / "images"
    class_folders(images, {"banded": 4, "dotted": 6})
    monkeypatch.setattr(torchvision.datasets, "DTD", lambda root, download: None)
    assert cli(["data", "prepare", "dtd", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "dtd" / "images" / "banded").is_dir()


def test_prepare_converts_a_parquet_manifest(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = make_fusion(tmp_path, "snli_ve", SNLI)
    manifest = folder / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), folder / "manifest.parquet")
    manifest.unlink()
    assert cli(["data", "check", "snli_ve", "--root", str(tmp_path)]) == 2
    assert "found manifest.parquet: run `ablate data prepare snli_ve" in capsys.readouterr().err
    assert cli(["data", "prepare", "snli_ve", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {manifest} (27 rows from manifest.parquet)" in out
    assert "snli_ve: ok, 3 classes (single-label), 12 train / 9 val / 6 test examples" in out
    assert [json.loads(line) for line in manifest.read_text().splitlines()] == rows


def test_data_check_covers_variants_and_fusion(tmp_path, capsys):
    make_variant(tmp_path, "imagenet_a", [f"n{i:08d}" for i in (1, 2)])
    assert cli(["data", "check", "imagenet_a", "--root", str(tmp_path)]) == 0
    assert "imagenet_a: ok, 2 classes, 4 test images (full download: 200 classes)" in (
        capsys.readouterr().out
    )
    folder = make_fusion(tmp_path, "snli_ve", SNLI)
    (folder / "images" / "train_1_2.jpg").unlink()  # in the middle: only the full check sees it
    assert cli(["data", "check", "snli_ve", "--root", str(tmp_path), "--quick"]) == 0
    assert cli(["data", "check", "snli_ve", "--root", str(tmp_path)]) == 2
    assert "train_1_2.jpg: image not found, listed in the train split" in capsys.readouterr().err
