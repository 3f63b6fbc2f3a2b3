"""The field's datasets in CoOp's layout, on tiny generated fixtures: splits, labels, base/new
halves, few-shot determinism, the image cache, `ablate data check`, and the presets in a spec."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers import TrainConfig, TrialConfig, fit
from trainers.configs import DataConfig
from trainers.data import check, images, list_datasets, load_task, sample_few_shot
from trainers.data.layouts import LAYOUTS, DatasetLayoutError, Layout
from trainers.methods.coop import CoOpConfig

CLASSES = ["b_class", "a class", "d class", "c class", "e class"]  # label order, not sorted
PER_SPLIT = {"train": 5, "val": 3, "test": 2}  # images per class
SIZE = 16  # the fixtures' cache size (the real one is 224)
CONF = Path(__file__).resolve().parents[2] / "ablate" / "conf" / "dataset"


def write_image(path: Path, label: int, index: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(label * 100 + index)
    pixels = (rng.random((12, 20, 3)) * 60 + label * 40).astype(np.uint8)  # non-square: crop
    Image.fromarray(pixels).save(path)
    return str(path)


def make_split_file(layout: Layout, folder: Path) -> None:
    image_root = folder / layout.image_dir if layout.image_dir else folder
    prefix = "cars_train/" if layout.name == "stanford_cars" else ""
    split = {}
    for name, n in PER_SPLIT.items():
        split[name] = []
        for label, cls in enumerate(CLASSES):
            for i in range(n):
                rel = f"{prefix}{cls.replace(' ', '_')}/{name}_{i}.jpg"
                write_image(image_root / rel, label, i + 10 * len(split))
                split[name].append([rel, label, cls])
    (folder / str(layout.split_file)).write_text(json.dumps(split))


def make_fgvc(folder: Path) -> None:
    (folder / "variants.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    for s, (name, n) in enumerate(PER_SPLIT.items()):
        lines = []
        for label, cls in enumerate(CLASSES):
            for i in range(n):
                image_id = f"{s}{label}{i:03d}"
                write_image(folder / "images" / f"{image_id}.jpg", label, i)
                lines.append(f"{image_id} {cls}\n")
        (folder / f"images_variant_{name}.txt").write_text("".join(lines))


def make_imagenet(folder: Path) -> None:
    wnids = [f"n{i:08d}" for i in range(len(CLASSES))]
    (folder / "classnames.txt").write_text("".join(f"{w} {c}\n" for w, c in zip(wnids, CLASSES)))
    for label, wnid in enumerate(wnids):
        for i in range(PER_SPLIT["train"] + PER_SPLIT["val"]):
            write_image(folder / "images" / "train" / wnid / f"{wnid}_{i}.JPEG", label, i)
        for i in range(PER_SPLIT["test"]):
            write_image(folder / "images" / "val" / wnid / f"val_{i}.JPEG", label, 50 + i)


def make_dataset(root: Path, layout: Layout) -> Path:
    folder = root / layout.folder
    folder.mkdir(parents=True)
    if layout.name == "imagenet":
        make_imagenet(folder)
    elif layout.name == "fgvc_aircraft":
        make_fgvc(folder)
    else:
        make_split_file(layout, folder)
    return folder


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 11 datasets, 5 classes each, in one root."""
    root = tmp_path_factory.mktemp("datasets")
    for layout in LAYOUTS.values():
        make_dataset(root, layout)
    return root


@pytest.fixture(autouse=True)
def small_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "CACHE_SIZE", SIZE)
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_layout_is_registered_with_a_preset():
    assert set(LAYOUTS) <= set(list_datasets()) and len(LAYOUTS) == 11
    for name, layout in LAYOUTS.items():
        preset = (CONF / f"{name}.yaml").read_text()
        assert f"name: {name}\n" in preset and f'template: "{layout.template}"' in preset


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_split_sizes_label_map_and_halves(name, data_root):
    task = load_task(DataConfig(name=name, root=str(data_root), shots=2))
    assert task.classnames == [c.replace("_", " ") for c in CLASSES]  # by label, "_" -> " "
    assert task.names(task.base_classes) == ["b class", "a class", "d class"]
    assert task.names(task.new_classes) == ["c class", "e class"]
    k = len(CLASSES)
    train_pool = PER_SPLIT["train"] + (PER_SPLIT["val"] - 2 if name == "imagenet" else 0)
    assert len(task.train) == k * train_pool
    assert len(task.val) == k * 2  # min(shots, 4) per class
    assert len(task.test) == k * PER_SPLIT["test"]
    for split in (task.train, task.val, task.test):  # every class equally often
        assert torch.bincount(split.labels, minlength=k).tolist() == [len(split) // k] * k
    test = task.test.of_classes(task.new_classes)  # lazy: decoded only when indexed
    images = test.images[torch.arange(len(test))]
    assert images.shape == (4, 3, SIZE, SIZE) and test.labels.tolist() == [0, 0, 1, 1]
    assert images.min() >= 0 and images.max() <= 1


def test_val_is_min_shots_4_per_class(data_root):
    assert len(load_task(DataConfig(name="dtd", root=str(data_root), shots=16)).val) == 5 * 3
    assert len(load_task(DataConfig(name="dtd", root=str(data_root), shots=1)).val) == 5 * 1


def test_imagenet_val_is_held_out_of_the_train_pool(data_root):
    task = load_task(DataConfig(name="imagenet", root=str(data_root), shots=2))
    assert not set(task.val.images.paths) & set(task.train.images.paths)
    assert all("/images/val/" in p for p in task.test.images.paths)


def test_few_shot_is_deterministic_and_differs_by_seed(data_root):
    task = load_task(DataConfig(name="oxford_pets", root=str(data_root), shots=2))
    a = sample_few_shot(task.train.labels, task.base_classes, 2, seed=1)
    b = sample_few_shot(task.train.labels, task.base_classes, 2, seed=1)
    c = sample_few_shot(task.train.labels, task.base_classes, 2, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c) and len(a) == 2 * 3
    assert torch.equal(task.train.subset(a).images, task.train.subset(b).images)


def test_second_load_reads_the_cache_not_the_images(data_root, small_cache, monkeypatch):
    task = load_task(DataConfig(name="eurosat", root=str(data_root), shots=4))
    index = sample_few_shot(task.train.labels, task.base_classes, 4, seed=3)
    first = task.train.subset(index).images
    assert len(list((small_cache / "eurosat").glob(f"{SIZE}px-12-*.npy"))) == 1

    def no_decoding(path: str, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(images, "decode", no_decoding)
    again = load_task(DataConfig(name="eurosat", root=str(data_root), shots=4))
    assert torch.equal(again.train.subset(index).images, first)


def test_fit_runs_on_a_dataset_on_disk(data_root, tiny_backbone):
    cfg = TrialConfig(
        method=CoOpConfig(prompt_length=2),
        dataset=DataConfig(name="dtd", root=str(data_root), shots=2, template="{} texture."),
        train=TrainConfig(epochs=1, device="cpu"),
    )
    (metrics,) = [m.metrics for m in fit(cfg, backbone=tiny_backbone)]
    assert {"val/hm", "test/base", "test/new"} <= set(metrics)


def test_evaluation_decodes_files_one_batch_at_a_time(data_root, tiny_backbone, monkeypatch):
    """Test splits on disk are never decoded whole (ImageNet's would not fit in memory)."""
    from trainers.data.images import ImageFiles

    sizes: list[int] = []
    load = ImageFiles.load
    monkeypatch.setattr(
        ImageFiles, "load", lambda self, paths: sizes.append(len(paths)) or load(self, paths)
    )
    cfg = TrialConfig(
        method=CoOpConfig(prompt_length=2),
        dataset=DataConfig(name="dtd", root=str(data_root), shots=2, eval_batch_size=2),
        train=TrainConfig(epochs=1, device="cpu"),
    )
    (metrics,) = [m.metrics for m in fit(cfg, backbone=tiny_backbone)]
    assert 0 <= metrics["test/hm"] <= 100
    assert sizes and max(sizes[1:]) <= 2  # after the few-shot train subset: batches of 2


# -- checks ---------------------------------------------------------------------------------------


def copy_dataset(tmp_path: Path, name: str) -> Path:
    make_dataset(tmp_path, LAYOUTS[name])
    return tmp_path


def test_check_is_empty_for_good_fixtures_and_names_what_is_missing(data_root, tmp_path):
    for name in LAYOUTS:
        assert check(DataConfig(name=name, root=str(data_root))) == [], name
    assert "dataset.root is not set" in check(DataConfig(name="dtd"))[0]
    (problem,) = check(DataConfig(name="sun397", root=str(tmp_path)))
    assert problem.startswith(f"{tmp_path / 'sun397'}: folder not found; expected root/sun397/")
    assert check(DataConfig(name="digits")) == []


def test_check_names_a_missing_split_file(tmp_path):
    root = copy_dataset(tmp_path, "oxford_pets")
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").unlink()
    (problem,) = check(DataConfig(name="oxford_pets", root=str(root)))
    assert "oxford_pets/split_zhou_OxfordPets.json: split file not found" in problem


def test_check_names_malformed_entries_and_missing_images(tmp_path):
    root = copy_dataset(tmp_path, "eurosat")
    path = root / "eurosat" / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    split["train"][4] = ["x.jpg", "three", "c class"]
    path.write_text(json.dumps(split))
    (problem,) = check(DataConfig(name="eurosat", root=str(root)))
    assert "split_zhou_EuroSAT.json: train[4]: expected [relative path, label, class name]" in (
        problem
    )
    path.write_text("{not json")
    assert "not valid JSON" in check(DataConfig(name="eurosat", root=str(root)))[0]
    split["train"][4] = ["gone.jpg", 0, "b_class"]
    path.write_text(json.dumps(split))
    assert check(DataConfig(name="eurosat", root=str(root))) == []  # quick: first/last only
    split["train"].append(["gone.jpg", 0, "b_class"])
    path.write_text(json.dumps(split))
    (problem,) = check(DataConfig(name="eurosat", root=str(root)))
    assert problem.endswith("2750/gone.jpg: image not found, listed in the train split")


def test_check_names_inconsistent_labels(tmp_path):
    root = copy_dataset(tmp_path, "dtd")
    path = root / "dtd" / "split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    split["test"][0][2] = "another name"
    path.write_text(json.dumps(split))
    with pytest.raises(DatasetLayoutError, match=r"test\[0\]: label 0 is 'another name'"):
        load_task(DataConfig(name="dtd", root=str(root)))


def test_check_imagenet_and_fgvc_layouts(tmp_path):
    root = copy_dataset(tmp_path, "imagenet")
    (root / "imagenet" / "classnames.txt").unlink()
    (problem,) = check(DataConfig(name="imagenet", root=str(root)))
    assert problem.startswith(f"{root / 'imagenet' / 'classnames.txt'}: not found")
    root = copy_dataset(tmp_path, "fgvc_aircraft")
    (root / "fgvc_aircraft" / "images_variant_val.txt").unlink()
    (problem,) = check(DataConfig(name="fgvc_aircraft", root=str(root)))
    assert "images_variant_val.txt: split list not found" in problem


def cli(argv: list[str]) -> int:
    from ablate.cli.data import add_parsers as add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_data_check_command(data_root, tmp_path, capsys):
    assert cli(["data", "check", "caltech101", "--root", str(data_root)]) == 0
    assert "caltech101: ok, 5 classes, 25 train / 15 val / 10 test" in capsys.readouterr().out
    root = copy_dataset(tmp_path, "ucf101")
    gone = root / "ucf101" / "UCF-101-midframes" / "a_class" / "train_1.jpg"
    gone.unlink()
    assert cli(["data", "check", "ucf101", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"error: {gone}: image not found, listed in the train split" in err
    assert cli(["data", "check", "ucf101", "--root", str(root), "--quick"]) == 0
    assert cli(["data", "check", "nope", "--root", str(root)]) == 2


def test_data_prepare_without_network_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import urllib.error

    import torchvision.datasets

    def offline(**kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "EuroSAT", offline)
    assert cli(["data", "prepare", "eurosat", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"could not download EuroSAT into {tmp_path / 'eurosat' / 'torchvision'}" in err
    assert "no network?" in err


# -- presets in a study ---------------------------------------------------------------------------

SPEC = """\
name: preset_{name}
method: coop
base: {{dataset: {name}, dataset.root: "{root}", backbone: tiny, train.epochs: 1}}
metric: {{name: val/hm, goal: maximize}}
parameters:
  optim.lr: {{values: [0.01]}}
seeds: [1]
search: {{algorithm: grid, trials: 1, max_concurrent: 1}}
scheduler: {{type: none}}
resources: {{cpu: 1, gpu: 0}}
"""


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_preset_validates_in_a_spec(name, data_root, tmp_path):
    from ablate import spec as specs
    from ablate.config import compose

    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(name=name, root=data_root))
    spec = specs.load(path)
    cfg = compose(spec.trial_overrides({"optim.lr": 0.01}))
    assert cfg.dataset.name == name and cfg.dataset.template == LAYOUTS[name].template
    assert cfg.dataset.root == str(data_root)


def test_a_spec_with_a_missing_dataset_root_is_rejected(tmp_path):
    from ablate import spec as specs
    from ablate.errors import SpecError

    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(name="dtd", root=tmp_path / "nowhere"))
    with pytest.raises(SpecError, match="nowhere/dtd: folder not found"):
        specs.load(path)


# ---- digits: scikit-learn's file, read without importing scikit-learn ------------------------
def test_digits_are_read_as_scikit_learn_reads_them():
    from sklearn.datasets import load_digits as sklearn_digits

    from trainers.data.digits import read_digits

    images, labels = read_digits()
    bunch = sklearn_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    np.testing.assert_array_equal(images, bunch.images)  # the same integers, parsed alike
    np.testing.assert_array_equal(labels, bunch.target)


def test_loading_digits_imports_no_scikit_learn():
    """A trial worker on the digits imports what it trains with, not scikit-learn's datasets."""
    code = (
        "import sys; from trainers.configs import DataConfig; from trainers.data import load_task;"
        " task = load_task(DataConfig(name='digits')); print(len(task.test), "
        "sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split(maxsplit=1)[1].strip() == "[]", out.stdout
