"""Cross-dataset and domain-generalisation protocols on generated fixtures: the ImageNet variants'
layouts (label maps, 200-class subsets, broken layouts), training on all classes, per-target
metrics and their average, and the metric names a study may choose."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainers.test_datasets import CLASSES, SIZE, make_dataset, write_image
from trainers import TrainConfig, TrialConfig, fit, protocols
from trainers.configs import DataConfig
from trainers.data import check, images, load_task
from trainers.data.imagenet_variants import VARIANTS
from trainers.data.layouts import LAYOUTS, DatasetLayoutError
from trainers.methods.coop import CoOpConfig
from trainers.methods.mope import MoPEConfig

WNIDS = [f"n{i:08d}" for i in range(len(CLASSES))]  # as make_imagenet writes them
PER_CLASS = 2  # test images per class in each variant


def make_variant(root: Path, name: str, wnids: list[str] = WNIDS) -> Path:
    """One ImageNet variant in CoOp's layout; -A/-R-style subsets via `wnids`."""
    v = VARIANTS[name]
    folder = root / v.folder
    (folder / v.image_dir).mkdir(parents=True)
    all_wnids = WNIDS
    (folder / "classnames.txt").write_text(
        "".join(f"{w} {c}\n" for w, c in zip(all_wnids, CLASSES))
    )
    for w in wnids:
        label = all_wnids.index(w)
        sub = str(label) if v.by_index else w
        for i in range(PER_CLASS):
            write_image(folder / v.image_dir / sub / f"{name}_{i}.jpg", label, 70 + i)
    return folder


@pytest.fixture(scope="session")
def proto_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet, two cross-dataset targets and the four variants (-A, -R on 3 of 5 classes)."""
    root = tmp_path_factory.mktemp("protocols")
    for name in ("imagenet", "dtd", "eurosat"):
        make_dataset(root, LAYOUTS[name])
    for name in VARIANTS:
        make_variant(root, name, WNIDS[1:4] if name in ("imagenet_a", "imagenet_r") else WNIDS)
    return root


@pytest.fixture(autouse=True)
def small_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "CACHE_SIZE", SIZE)
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_sizes_and_label_maps(name, proto_root):
    task = load_task(DataConfig(name=name, root=str(proto_root)))
    names = [c.replace("_", " ") for c in CLASSES]
    if name in ("imagenet_a", "imagenet_r"):  # the class subset present, 3-way, as CoOp
        assert task.classnames == names[1:4] and len(task.test) == 3 * PER_CLASS
        assert task.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    else:
        assert task.classnames == names and len(task.test) == 5 * PER_CLASS
        assert task.test.labels.tolist() == [k for k in range(5) for _ in range(PER_CLASS)]
    assert len(task.train) == len(task.val) == 0
    first = task.test.images[torch.tensor([0])]
    assert first.shape == (1, 3, SIZE, SIZE)
    assert check(DataConfig(name=name, root=str(proto_root))) == []


def test_variant_classnames_fall_back_to_imagenets(tmp_path):
    make_dataset(tmp_path, LAYOUTS["imagenet"])
    folder = make_variant(tmp_path, "imagenet_sketch")
    (folder / "classnames.txt").unlink()
    task = load_task(DataConfig(name="imagenet_sketch", root=str(tmp_path)))
    assert task.classnames[0] == "b class"


def test_broken_variant_layouts_are_named(tmp_path):
    cfg = DataConfig(name="imagenet_r", root=str(tmp_path))
    (problem,) = check(cfg)
    assert problem.startswith(
        f"{tmp_path / 'imagenet-rendition'}: folder not found; expected "
        "root/imagenet-rendition/imagenet-r/<wnid>/"
    )
    folder = make_variant(tmp_path, "imagenet_r")
    (folder / "imagenet-r" / "n99999999").mkdir()  # a class folder classnames.txt lacks
    (problem,) = check(cfg)
    assert "imagenet-r/n99999999: unknown class 'n99999999': not in classnames.txt" in problem
    (folder / "imagenet-r" / "n99999999").rmdir()
    (folder / "classnames.txt").unlink()
    (problem,) = check(cfg)
    assert "imagenet-rendition/classnames.txt: not found" in problem
    v2 = make_variant(tmp_path, "imagenet_v2")
    (v2 / VARIANTS["imagenet_v2"].image_dir / "7").mkdir()  # label 7 of 5 classes
    with pytest.raises(DatasetLayoutError, match="unknown class folder '7'; expected a label 0..4"):
        load_task(DataConfig(name="imagenet_v2", root=str(tmp_path)))


def test_protocol_options_and_metric_names():
    with pytest.raises(ValueError, match="dataset.protocol must be one of"):
        DataConfig(protocol="zero")
    with pytest.raises(ValueError, match="dataset.targets needs protocol cross_dataset"):
        DataConfig(targets=["dtd"])
    base = protocols.metric_names(DataConfig(name="imagenet"))
    assert base == [f"{s}/{m}" for s in ("val", "test") for m in ("base", "new", "hm")]
    xd = protocols.metric_names(DataConfig(name="imagenet", protocol="cross_dataset"))
    assert "test/caltech101/acc" in xd and "test/cross_dataset/avg" in xd and len(xd) == 2 + 11
    assert "test/imagenet/acc" not in xd
    dg = protocols.metric_names(DataConfig(name="imagenet", protocol="domain_generalization"))
    assert dg[2:] == [f"test/{v}/acc" for v in VARIANTS] + ["test/domain_generalization/avg"]
    assert protocols.metric_names(DataConfig(name="dtd", protocol="all")) == ["val/acc", "test/acc"]
    assert protocols.check(
        DataConfig(name="imagenet", protocol="cross_dataset", targets=["dtd", "nope", "imagenet"])
    ) == [
        "dataset.targets: 'nope' is not a registered dataset",
        "dataset.targets: 'imagenet' is the source dataset itself",
    ]
    (problem,) = protocols.check(DataConfig(name="imagenet_a"))
    assert "imagenet_a has a test split only" in problem
    (problem,) = protocols.check(DataConfig(name="mm_imdb", protocol="cross_dataset"))
    assert "mm_imdb is a fusion dataset" in problem


def run(cfg: TrialConfig, backbone) -> dict[str, float]:
    return [m.metrics for m in fit(cfg, backbone=backbone)][-1]


def test_cross_dataset_trains_on_all_classes_and_scores_each_target(proto_root, tiny_backbone):
    data = DataConfig(
        name="imagenet",
        root=str(proto_root),
        shots=1,
        eval_batch_size=3,
        protocol="cross_dataset",
        targets=["dtd", "eurosat"],
    )
    cfg = TrialConfig(
        method=CoOpConfig(prompt_length=2), dataset=data, train=TrainConfig(epochs=1, device="cpu")
    )
    task = load_task(data)
    assert protocols.train_classes(task, data) == range(5)
    metrics = run(cfg, tiny_backbone)
    expected = {"val/acc", "test/acc", "test/dtd/acc", "test/eurosat/acc", "test/cross_dataset/avg"}
    assert expected <= set(metrics) and "test/hm" not in metrics and "val/hm" not in metrics
    assert metrics["test/cross_dataset/avg"] == pytest.approx(
        (metrics["test/dtd/acc"] + metrics["test/eurosat/acc"]) / 2
    )
    for key in expected:  # 10 test images per target: multiples of 10 %
        assert 0 <= metrics[key] <= 100
    assert (metrics["test/dtd/acc"] / 10) == pytest.approx(round(metrics["test/dtd/acc"] / 10))


def test_target_accuracy_uses_the_targets_template_and_class_names(proto_root, tiny_backbone):
    """Zero-shot on a target equals zero-shot run directly on it with protocol `all`."""
    from trainers.methods.zeroshot import ZeroShotConfig

    def zero_shot(data: DataConfig) -> dict[str, float]:
        cfg = TrialConfig(
            method=ZeroShotConfig(), dataset=data, train=TrainConfig(epochs=1, device="cpu")
        )
        return run(cfg, tiny_backbone)

    xd = zero_shot(
        DataConfig(
            name="imagenet",
            root=str(proto_root),
            shots=1,
            protocol="cross_dataset",
            targets=["dtd"],
        )
    )
    direct = zero_shot(
        DataConfig(
            name="dtd",
            root=str(proto_root),
            shots=1,
            protocol="all",
            template=LAYOUTS["dtd"].template,
        )
    )
    assert xd["test/dtd/acc"] == pytest.approx(direct["test/acc"])


def test_domain_generalization_scores_the_variants(proto_root, tiny_backbone):
    data = DataConfig(
        name="imagenet", root=str(proto_root), shots=1, protocol="domain_generalization"
    )
    cfg = TrialConfig(
        method=MoPEConfig(prompt_depth=1, num_experts=2),
        dataset=data,
        train=TrainConfig(epochs=1, device="cpu"),
    )
    metrics = run(cfg, tiny_backbone)
    scores = [metrics[f"test/{v}/acc"] for v in VARIANTS]
    assert metrics["test/domain_generalization/avg"] == pytest.approx(sum(scores) / 4)
    assert set(protocols.metric_names(data)) <= set(metrics)


def test_targets_are_decoded_one_batch_at_a_time(proto_root, tiny_backbone, monkeypatch):
    from trainers.data.images import ImageFiles

    sizes: list[int] = []
    load = ImageFiles.load
    monkeypatch.setattr(
        ImageFiles, "load", lambda self, paths: sizes.append(len(paths)) or load(self, paths)
    )
    data = DataConfig(
        name="imagenet",
        root=str(proto_root),
        shots=1,
        eval_batch_size=4,
        protocol="domain_generalization",
        targets=["imagenet_sketch"],
    )
    cfg = TrialConfig(
        method=CoOpConfig(prompt_length=2), dataset=data, train=TrainConfig(epochs=1, device="cpu")
    )
    run(cfg, tiny_backbone)
    assert sizes[-3:] == [4, 4, 2]  # the sketch target's 10 images, in batches of 4


# -- in a study -----------------------------------------------------------------------------------

SPEC = """\
name: xd
method: coop
base: {{dataset: imagenet, dataset.root: "{root}", dataset.protocol: {protocol},
        dataset.targets: {targets}, train.epochs: 1}}
metric: {{name: {metric}, goal: maximize}}
parameters:
  optim.lr: {{values: [0.01]}}
search: {{algorithm: grid, trials: 1, max_concurrent: 1}}
scheduler: {{type: none}}
"""


def write_spec(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(**fields))
    return path


def test_a_study_may_choose_a_protocol_metric(proto_root, tmp_path):
    from ablate import spec as specs
    from ablate.config import compose
    from ablate.errors import SpecError

    path = write_spec(
        tmp_path,
        root=proto_root,
        protocol="cross_dataset",
        targets="[dtd, eurosat]",
        metric="test/cross_dataset/avg",
    )
    spec = specs.load(path)
    cfg = compose(spec.trial_overrides({"optim.lr": 0.01}))
    assert cfg.dataset.protocol == "cross_dataset" and cfg.dataset.targets == ["dtd", "eurosat"]
    specs.load(
        write_spec(
            tmp_path,
            root=proto_root,
            protocol="domain_generalization",
            targets="[]",
            metric="test/imagenet_a/acc",
        )
    )
    with pytest.raises(SpecError, match=r"metric.name: 'test/hm' is not one of val/acc, test/acc"):
        specs.load(
            write_spec(
                tmp_path,
                root=proto_root,
                protocol="cross_dataset",
                targets="[dtd]",
                metric="test/hm",
            )
        )
    with pytest.raises(SpecError, match="'test/dtd/acc' is not one of val/base"):
        specs.load(
            write_spec(
                tmp_path, root=proto_root, protocol="base2new", targets="[]", metric="test/dtd/acc"
            )
        )
    with pytest.raises(SpecError, match="target caltech101: .*caltech-101: folder not found"):
        specs.load(
            write_spec(
                tmp_path,
                root=proto_root,
                protocol="cross_dataset",
                targets="[caltech101]",
                metric="val/acc",
            )
        )
