"""`metric:` as a list of objectives: each item checked like one metric and named
`metric[i]` with its line; a scheduler that ranks one metric is refused, naming what works."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ablate import spec as specs
from ablate.errors import SpecError
from ablate.spec import schema

HEAD = "name: x\nmethod: coop\nbase: {dataset: tiny_mnist, backbone: tiny}\n"
PARAMS = "parameters: {optim.lr: {values: [0.1, 0.2]}}\n"


def load(tmp_path, body: str) -> specs.StudySpec:
    path = tmp_path / "study.yaml"
    path.write_text(HEAD + body + PARAMS)
    return specs.load(path)


def problems(tmp_path, body: str) -> dict[str, tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, body)
    return {p.key: (p.line, p.reason) for p in info.value.problems}


def test_a_list_of_metrics_is_every_objective_in_order(tmp_path):
    spec = load(
        tmp_path,
        "metric:\n  - {name: val/hm, goal: maximize}\n  - {name: cost/params, goal: minimize}\n"
        "scheduler: {type: none}\n",
    )
    assert [(o.name, o.mode) for o in spec.objectives] == [
        ("val/hm", "max"),
        ("cost/params", "min"),
    ]
    assert spec.metric.name == "val/hm"  # the first objective
    assert specs.objectives_text(spec) == "val/hm (maximize), cost/params (minimize)"
    assert "val/hm (maximize), cost/params (minimize) on the seed mean (a Pareto front)" in (
        specs.describe_plan(spec)
    )


def test_one_mapping_keeps_working(tmp_path):
    spec = load(tmp_path, "metric: {name: val/new, goal: maximize}\n")
    assert [o.name for o in spec.objectives] == ["val/new"] and spec.more_objectives == ()


def test_each_item_is_checked_and_named_with_its_line(tmp_path):
    found = problems(
        tmp_path,
        "metric:\n"  # line 4
        "  - {name: val/hm, goal: up}\n"
        "  - name: nothing\n"
        "  - 3\n"
        "  - {name: val/hm, colour: red}\n"
        "scheduler: {type: none}\n",
    )
    assert found["metric[0].goal"] == (5, "'up' is not one of maximize, minimize")
    assert (
        found["metric[1].name"][0] == 6 and "'nothing' is not one of" in found["metric[1].name"][1]
    )
    assert found["metric[2]"] == (7, "expected a mapping such as {name: val/hm}, got int 3")
    assert found["metric[3].colour"][0] == 8
    assert found["metric[3].name"] == (8, "'val/hm' is already metric[0]")


def test_an_empty_list_is_refused(tmp_path):
    assert "non-empty list" in problems(tmp_path, "metric: []\n")["metric"][1]


@pytest.mark.parametrize("scheduler", ["asha", "median", "hyperband"])
def test_a_scheduler_that_ranks_one_metric_is_refused_naming_what_works(tmp_path, scheduler):
    found = problems(
        tmp_path,
        "metric: [{name: val/hm}, {name: cost/params, goal: minimize}]\n"
        f"scheduler: {{type: {scheduler}}}\n",
    )
    assert found["scheduler.type"] == (
        5,
        f"{scheduler} ranks trials on one metric; a study with 2 objectives needs "
        "scheduler: {type: none}",
    )


def test_the_default_scheduler_is_refused_at_the_metric(tmp_path):
    found = problems(tmp_path, "metric: [{name: val/hm}, {name: cost/params, goal: minimize}]\n")
    line, reason = found["metric"]
    assert line == 4 and reason.startswith("2 objectives need scheduler: {type: none}")
    assert "the default scheduler, asha, ranks trials on one metric" in reason


def test_a_metric_the_dataset_lacks_is_named_by_its_index(tmp_path):
    found = problems(
        tmp_path,
        "metric:\n  - {name: val/hm}\n  - {name: test/new/avg}\nscheduler: {type: none}\n",
    )
    assert found["metric[1].name"][0] == 6
    assert "'test/new/avg' is not one of" in found["metric[1].name"][1]


def test_the_schema_takes_one_metric_or_a_list():
    study = {"name": "x", "method": "coop", "scheduler": {"type": "none"}}
    validator = jsonschema.Draft202012Validator(json.loads(schema.render()))
    for metric in (
        {"name": "val/hm"},
        [{"name": "val/hm"}, {"name": "cost/params", "goal": "minimize"}],
    ):
        assert not list(validator.iter_errors(study | {"metric": metric}))
    for metric in ([], [{"name": "val/hm", "goal": "up"}], ["val/hm"]):
        assert list(validator.iter_errors(study | {"metric": metric}))
