"""Multimodal fusion manifests (UPMC Food-101, SNLI-VE, MM-IMDB) on generated fixtures: split
sizes, label maps, multi-label sampling, F1, a clear error per broken manifest, and MoPE trained
with its prompts conditioned on the paired text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.trainers.test_datasets import SIZE, write_image
from trainers import TrainConfig, TrialConfig, fit
from trainers.configs import DataConfig
from trainers.data import check, images, load_task
from trainers.data.fusion import FUSION, MM_IMDB_GENRES, FusionTask, sample_shots
from trainers.data.layouts import DatasetLayoutError
from trainers.methods.coop import CoOpConfig
from trainers.methods.mope import MoPEConfig
from trainers.metrics import f1_scores

PER_SPLIT = {"train": 4, "val": 3, "test": 2}  # examples per class
FOOD = ["pizza", "apple_pie", "sushi"]  # sorted by the reader: apple_pie, pizza, sushi
SNLI = ["entailment", "neutral", "contradiction"]
GENRES = ["Drama", "Comedy", "Horror"]


def make_fusion(root: Path, name: str, classes: list[str]) -> Path:
    layout = FUSION[name]
    folder = root / layout.folder
    lines = []
    for split, n in PER_SPLIT.items():
        for label, cls in enumerate(classes):
            for i in range(n):
                rel = f"images/{split}_{label}_{i}.jpg"
                write_image(folder / rel, label, i)
                row: dict[str, object] = {
                    "image": rel,
                    "text": f"text about {cls} {i}",
                    "split": split,
                }
                if layout.multi_label:  # every second example also has the next genre
                    row["labels"] = [cls] + ([classes[(label + 1) % 3]] if i % 2 else [])
                else:
                    row["label"] = cls
                lines.append(json.dumps(row))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def fusion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fusion")
    make_fusion(root, "upmc_food101", FOOD)
    make_fusion(root, "snli_ve", SNLI)
    make_fusion(root, "mm_imdb", GENRES)
    return root


@pytest.fixture(autouse=True)
def small_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "CACHE_SIZE", SIZE)
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_single_label_sizes_and_label_maps(fusion_root):
    food = load_task(DataConfig(name="upmc_food101", root=str(fusion_root), shots=2))
    assert isinstance(food, FusionTask) and not food.multi_label
    assert food.classnames == ["apple pie", "pizza", "sushi"]  # sorted names, "_" -> " "
    assert (len(food.train), len(food.val), len(food.test)) == (12, 6, 6)
    assert food.train.labels.tolist()[:4] == [1, 1, 1, 1]  # pizza's lines come first
    assert food.texts["train"][0] == "text about pizza 0" and len(food.texts["val"]) == 6
    snli = load_task(DataConfig(name="snli_ve", root=str(fusion_root), shots=8))
    assert snli.classnames == SNLI and len(snli.val) == 3 * 3  # min(shots, 4), 3 per class
    assert torch.bincount(snli.test.labels).tolist() == [2, 2, 2]
    assert snli.test.images[torch.tensor([0])].shape == (1, 3, SIZE, SIZE)


def test_multi_label_map_and_sampling(fusion_root):
    task = load_task(DataConfig(name="mm_imdb", root=str(fusion_root), shots=1))
    assert task.multi_label and task.classnames == list(MM_IMDB_GENRES)
    assert task.train.labels.shape == (12, 23)
    first_two = task.train.labels[:2, :3].tolist()
    assert first_two == [[1, 0, 0], [1, 1, 0]]  # Drama; Drama + Comedy
    picked = sample_shots(task.train.labels, shots=1, seed=0)
    assert torch.equal(picked, sample_shots(task.train.labels, shots=1, seed=0))
    has = task.train.labels[picked][:, [0, 1, 7]].sum(0)  # Drama, Comedy, Horror
    assert (has >= 1).all() and len(picked) == 3


def test_f1_scores():
    targets = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0]]).float()
    logits = torch.tensor([[2.0, -1, 3], [-1, -2, -3], [1, 1, 1]])
    # class 0: tp 2; class 1: tp 1, fn 1; class 2: tp 1, fp 1 -> F1 1, 2/3, 2/3
    macro, micro = f1_scores(logits, targets)
    assert macro == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
    assert micro == pytest.approx(100 * 2 * 4 / (2 * 4 + 1 + 1))


def test_broken_manifests_are_named(tmp_path):
    cfg = DataConfig(name="snli_ve", root=str(tmp_path))
    (problem,) = check(cfg)
    assert problem.startswith(
        f"{tmp_path / 'snli_ve' / 'manifest.jsonl'}: manifest not found; "
        'expected root/snli_ve/manifest.jsonl with lines {"image"'
    )
    (tmp_path / "snli_ve").mkdir()
    (tmp_path / "snli_ve" / "manifest.parquet").write_bytes(b"")
    assert "found manifest.parquet: run `ablate data prepare snli_ve" in check(cfg)[0]
    folder = make_fusion(tmp_path, "snli_ve", SNLI)
    manifest = folder / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    assert check(cfg) == []
    gone = folder / "images" / "test_2_1.jpg"  # the test split's last image
    gone.unlink()
    assert check(cfg) == [f"{gone}: image not found, listed in the test split"]
    bad = json.loads(lines[0]) | {"label": "maybe"}
    manifest.write_text("\n".join([json.dumps(bad), *lines[1:]]))
    (problem,) = check(cfg)
    assert "unknown class 'maybe' (train example " in problem
    assert "not in snli_ve's label set" in problem
    manifest.write_text("\n".join([lines[0], "{oops", '{"image": 1}', *lines[1:]]))
    problems = check(cfg)
    assert (
        problems[0]
        == f"{manifest}:2: not valid JSON (Expecting property name enclosed in double quotes)"
    )
    assert problems[1] == f"{manifest}:3: 'image' must be a string"
    mm = make_fusion(tmp_path, "mm_imdb", GENRES) / "manifest.jsonl"
    mm.write_text(mm.read_text().replace('"labels": ["Drama"]', '"labels": "Drama"'))
    with pytest.raises(DatasetLayoutError, match="'labels' must be a non-empty list"):
        load_task(DataConfig(name="mm_imdb", root=str(tmp_path)))


def test_classes_txt_fixes_the_label_set(tmp_path):
    folder = make_fusion(tmp_path, "upmc_food101", FOOD)
    (folder / "classes.txt").write_text("sushi\npizza\napple_pie\n")
    task = load_task(DataConfig(name="upmc_food101", root=str(tmp_path)))
    assert task.classnames == ["sushi", "pizza", "apple pie"]
    (folder / "classes.txt").write_text("sushi\npizza\n")
    with pytest.raises(DatasetLayoutError, match=r"unknown class 'apple_pie' .*classes.txt"):
        load_task(DataConfig(name="upmc_food101", root=str(tmp_path)))


def train(name: str, root: Path, method: object, backbone, epochs: int = 1) -> list[dict]:
    cfg = TrialConfig(
        method=method,
        dataset=DataConfig(
            name=name, root=str(root), shots=2, batch_size=4, template=FUSION[name].template
        ),
        optim=__import__("trainers").configs.OptimConfig(lr=0.01, warmup_epochs=0),
        train=TrainConfig(epochs=epochs, device="cpu"),
    )
    return [m.metrics for m in fit(cfg, backbone=backbone)]


def test_mope_trains_on_a_single_label_fusion_dataset(fusion_root, tiny_backbone):
    runs = train(
        "snli_ve", fusion_root, MoPEConfig(prompt_depth=2, num_experts=2), tiny_backbone, 2
    )
    assert {"val/acc", "train/ce", "train/balance", "diag/routing_entropy"} <= set(runs[0])
    assert "test/acc" in runs[-1] and "test/acc" not in runs[0]
    assert 0 <= runs[-1]["test/acc"] <= 100 and runs[1]["train/loss"] < runs[0]["train/loss"] + 1


def test_mope_trains_on_multi_label_and_reports_f1(fusion_root, tiny_backbone):
    (metrics,) = train("mm_imdb", fusion_root, MoPEConfig(prompt_depth=1), tiny_backbone)
    assert {"val/macro_f1", "val/micro_f1", "test/macro_f1", "test/micro_f1"} <= set(metrics)
    assert "train/bce" in metrics and "val/acc" not in metrics


def test_other_methods_train_a_head_on_the_image_alone(fusion_root, tiny_backbone):
    (metrics,) = train("upmc_food101", fusion_root, CoOpConfig(prompt_length=2), tiny_backbone)
    assert 0 <= metrics["test/acc"] <= 100


def test_mope_prompts_are_conditioned_on_the_paired_text(fusion_root, tiny_backbone):
    """Same image, different texts: MoPE's logits differ; a text-blind method's do not."""
    from trainers.data.fusion import FusionTask
    from trainers.engine import word_embedder
    from trainers.evaluation import ImagePrep
    from trainers.fusion import FusionHead, FusionModel
    from trainers.methods.coop import CoOp
    from trainers.methods.mope import MoPE
    from trainers.prompted_clip import PromptedCLIP

    task = load_task(DataConfig(name="snli_ve", root=str(fusion_root)))
    two = task.test.subset(torch.tensor([0, 0]))
    image = ImagePrep(tiny_backbone, torch.device("cpu"))(two).images  # backbone's size
    same = FusionTask(
        name="x",
        classnames=task.classnames,
        train=task.test,
        val=task.test,
        test=task.test,
        texts={"test": ["a dog runs", "two cats sleep"]},
    )
    outputs = []
    for cls, cfg in ((MoPE, MoPEConfig(prompt_depth=1)), (CoOp, CoOpConfig(prompt_length=2))):
        method = cls(cfg, tiny_backbone.dims, word_embedder(tiny_backbone, torch.device("cpu")))
        model = PromptedCLIP(tiny_backbone, method, "a photo of {}.")
        method.add_module("fusion_head", FusionHead(torch.randn(3, 64), 1.0))
        with torch.no_grad():
            outputs.append(FusionModel(model, same)(image, "test", [0, 1], keep=False)[0])
    assert not torch.allclose(outputs[0][0], outputs[0][1])
    assert torch.allclose(outputs[1][0], outputs[1][1])


@pytest.mark.parametrize("name", sorted(FUSION))
def test_presets_and_example_study_validate(name, fusion_root):
    from ablate import spec as specs
    from ablate.config import compose

    cfg = compose([f"dataset={name}", f"dataset.root={fusion_root}"])
    assert cfg.dataset.template == FUSION[name].template
    if name == "mm_imdb":
        example = Path(__file__).resolve().parents[2] / "search_spaces/examples"
        spec = specs.load(
            example / "mope_fusion_mm_imdb.yaml",
            [f"dataset.root={fusion_root}", "backbone=tiny", "method.prompt_depth=2"],
        )
        assert spec.metric.name == "val/macro_f1"


def test_multi_label_head_does_not_start_by_predicting_every_label():
    """Zero-shot cosines are all positive: uncentred, sigmoid(scale x cos) > 0.5 everywhere."""
    from trainers.fusion import FusionHead

    torch.manual_seed(0)
    # CLIP's features share a direction, so image-text cosines are mostly positive
    common = torch.randn(16)
    classes = torch.nn.functional.normalize(common + 0.5 * torch.randn(5, 16), dim=-1)
    images = torch.nn.functional.normalize(common + 0.5 * torch.randn(40, 16), dim=-1)
    assert (FusionHead(classes, 100.0)(images) > 0).all()  # the problem
    centred = FusionHead(classes, 100.0, centre_on=images)(images)
    assert 0.2 < (centred > 0).float().mean() < 0.8
    torch.testing.assert_close(centred.mean(0), torch.zeros(5), atol=1e-3, rtol=0)
