"""A suite of datasets in a study file (issue 17, item 1): each trial composes once per dataset,
the suite excludes every other way of picking the dataset, and every dataset is checked before
anything launches."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ablate import config
from ablate import spec as specs
from ablate.errors import SpecError
from ablate.search import resume

REPO = Path(__file__).resolve().parents[3]
SUITE = """\
name: s
method: coop
datasets: [tiny_mnist, tiny_fashion, tiny_animals]
base: {train.epochs: 2, dataset.shots: 4}
parameters:
  method.prompt_length: {values: [2, 4]}
seeds: [1, 2]
"""


def load(tmp_path: Path, text: str, overrides: list[str] | None = None) -> specs.StudySpec:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return specs.load(path, overrides)


def problems(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, overrides)
    return [f"{p.key}: {p.reason}" for p in info.value.problems]


def test_each_dataset_of_the_suite_composes_its_own_trial(tmp_path):
    spec = load(tmp_path, SUITE)
    assert spec.suite == ["tiny_mnist", "tiny_fashion", "tiny_animals"]
    values = {"method.prompt_length": 4}
    names = [config.compose(spec.trial_overrides(values, d)).dataset.name for d in spec.suite]
    assert names == spec.suite
    cfg = config.compose(spec.trial_overrides(values, "tiny_animals"))
    assert cfg.dataset.shots == 4 and cfg.method.prompt_length == 4  # the base on every dataset
    assert config.compose(spec.trial_overrides(values)).dataset.name == "tiny_mnist"  # the first
    plan = specs.describe_plan(spec)
    assert f"{spec.num_trials} configurations x 3 datasets" in plan
    assert f"= {spec.num_trials * 3 * 2} runs" in plan
    assert "suite mean of the seed means" in plan


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("datasets: [tiny_mnist, nope]", "datasets: 'nope' is not a dataset; one of"),
        ("datasets: [tiny_mnist, tiny_mnist]", "datasets: repeated datasets"),
        ("datasets: []", "datasets: expected a non-empty list of dataset names"),
        ("datasets: tiny_mnist", "datasets: expected a non-empty list of dataset names"),
    ],
)
def test_a_bad_suite_is_refused_naming_the_key(tmp_path, change, expected):
    text = SUITE.replace("datasets: [tiny_mnist, tiny_fashion, tiny_animals]", change)
    assert any(p.startswith(expected) for p in problems(tmp_path, text))


def test_the_suite_excludes_every_other_way_of_picking_the_dataset(tmp_path):
    text = SUITE.replace("base: {", "base: {dataset: tiny_mnist, ")
    assert any(p.startswith("base.dataset: the suite's") for p in problems(tmp_path, text))
    text = SUITE + "  dataset: {values: [tiny_mnist, tiny_fashion]}\n"
    text = text.replace("seeds: [1, 2]\n", "") + "seeds: [1, 2]\n"
    assert any(p.startswith("parameters.dataset: the suite's") for p in problems(tmp_path, text))
    found = problems(tmp_path, SUITE, ["dataset=tiny_fashion"])
    assert any(p.startswith("overrides: 'dataset=tiny_fashion'") for p in found)


def test_every_dataset_of_the_paper_setting_is_checked_before_launch():
    """The 11-dataset file validates but for the data: one missing folder per dataset, each
    problem naming its dataset."""
    spec_file = REPO / "search_spaces/examples/maple_base2new_11.yaml"
    with pytest.raises(SpecError) as info:
        specs.load(spec_file, ["dataset.root=/nowhere"])
    found = info.value.problems
    assert [p.key for p in found] == ["datasets"] * 11
    named = [p.reason.split(":", 1)[0].removeprefix("on dataset ") for p in found]
    assert named == yaml.safe_load(spec_file.read_text())["datasets"]
    assert all("/nowhere/" in p.reason and "folder not found" in p.reason for p in found)


def test_a_suite_configuration_is_finished_once_every_dataset_is(tmp_path, monkeypatch):
    spec = load(tmp_path, SUITE)

    def rows(datasets: list[str]) -> list[dict]:
        return [
            {"status": "completed", "trial_key": f"k-{d}", "dataset": d, "seed": s, "epoch": 2,
             "method.prompt_length": 2, "val/hm": 10.0 * (i + 1) + s}
            for i, d in enumerate(datasets) for s in (1, 2)
        ]  # fmt: skip

    class Table:
        def __init__(self, rows: list[dict]) -> None:
            self.rows = rows

        def to_pylist(self) -> list[dict]:
            return self.rows

    monkeypatch.setattr(resume.results, "read_all", lambda _: Table(rows(spec.datasets[:2])))
    assert resume.finished_configs(spec, tmp_path) == []  # tiny_animals still missing
    monkeypatch.setattr(resume.results, "read_all", lambda _: Table(rows(spec.datasets)))
    [(params, seeds, rewards)] = resume.finished_configs(spec, tmp_path)
    assert params == {"method.prompt_length": 2} and seeds == {1, 2}
    assert rewards == pytest.approx([(11.5 + 21.5 + 31.5) / 3])  # the suite mean of seed means
