"""Search-space files: every shipped one validates; every bad one gets its own clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ablate import spec as specs
from ablate.cli import main
from ablate.errors import SpecError
from ablate.spec import check_trials

REPO = Path(__file__).resolve().parents[3]
BAD = sorted((REPO / "tests/data/bad_specs").glob("*.yaml"))
SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} needs a '# expect: ...' first line"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_search_space_validates(path):
    spec = specs.load(path)
    assert spec.num_trials >= 1
    assert "first trial's config" in specs.describe_plan(spec)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_gets_its_own_clear_error_and_exit_2(path, in_tmp, capsys):
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert expected(path) in err
    assert "Traceback" not in err
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "results").exists()


def test_all_problems_are_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "name: x\nmethod: coop\nseeds: []\nsearch: {algorithm: bayes, trials: 0}\n"
        "parameters: {optim.lr: {distribution: uniform, min: 1, max: 0}}\n"
    )
    with pytest.raises(SpecError) as info:
        specs.load(path)
    keys = {p.key for p in info.value.problems}
    assert {"seeds", "search.algorithm", "search.trials", "parameters.optim.lr"} <= keys
    lines = {p.key: p.line for p in info.value.problems}
    assert lines["seeds"] == 3 and lines["parameters.optim.lr"] == 5


def test_missing_file_is_exit_2_without_traceback(in_tmp):
    proc = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "search", "nope.yaml"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "nope.yaml: file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_command_line_overrides_apply_on_top_of_base():
    path = REPO / "search_spaces/quickstart.yaml"
    spec = specs.load(path, ["train.epochs=3", "dataset.shots=2"])
    overrides = spec.trial_overrides({"optim.lr": 0.01})
    assert overrides.index("train.epochs=3") > overrides.index("train.epochs=6")
    from ablate.config import compose

    cfg = compose(overrides)
    assert cfg.train.epochs == 3 and cfg.dataset.shots == 2 and cfg.optim.lr == 0.01


def test_an_override_of_a_searched_key_is_rejected():
    with pytest.raises(SpecError, match="sets a searched parameter"):
        specs.load(REPO / "search_spaces/quickstart.yaml", ["optim.lr=0.1"])


def test_dry_run_prints_the_plan_and_launches_nothing(in_tmp, capsys):
    assert main(["search", str(REPO / "search_spaces/quickstart.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 configurations x 2 seeds [1, 2] = 16 runs" in out
    assert "ASHA" in out and "method.prompt_length" in out
    assert not (in_tmp / "mlflow.db").exists()


def test_ablation_ofat_and_factorial_configurations(tmp_path):
    path = tmp_path / "abl.yaml"
    path.write_text(
        "name: abl\nmethod: maple\nbase: {method.prompt_depth: 2}\n"
        "ablation:\n  design: DESIGN\n  base: {method.prompt_length: 2, optim.lr: 0.01}\n"
        "  variants:\n    short: {method.prompt_length: 1}\n    fast: {optim.lr: 0.1}\n"
        "search: {algorithm: grid}\n"
    )
    path.write_text(path.read_text().replace("DESIGN", "ofat"))
    ofat = specs.load(path)
    assert list(ofat.ablation.configurations()) == ["base", "short", "fast"]
    assert ofat.num_trials == 3
    assert "method.prompt_length=1" in ofat.trial_overrides({"variant": "short"})
    path.write_text(path.read_text().replace("ofat", "factorial"))
    factorial = specs.load(path)
    assert factorial.num_trials == 4
    assert "base" in factorial.ablation.configurations()


def test_help_explains_without_importing_torch():
    code = (
        "import sys; from ablate.cli import main\n"
        "try:\n    main(['search', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "Hydra override" in out and "--dry-run" in out
    assert out.strip().endswith("False False")


def test_an_unreachable_tracking_server_is_refused_before_launch(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    path = REPO / "search_spaces/quickstart.yaml"
    assert main(["search", str(path), "--tracking-uri", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:1 (--tracking-uri) does not answer" in err
    assert not (in_tmp / "results").exists()


def test_gpu_auto_asks_for_a_measured_share_and_a_word_is_refused(tmp_path):
    text = (REPO / "search_spaces/quickstart.yaml").read_text()
    auto = tmp_path / "auto.yaml"
    auto.write_text(text.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: auto}"))
    spec = specs.load(auto)
    assert spec.resources.gpu_auto and spec.resources.gpu == 1.0
    assert "GPU share measured per configuration" in specs.describe_plan(spec)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: half}"))
    with pytest.raises(SpecError, match="resources.gpu.*number >= 0 or auto, got 'half'"):
        specs.load(bad)


DUPLICATES = {  # file text, the repeated key, its first and its second line
    "top-level": (
        "name: x\nmethod: coop\nname: y\nparameters: {optim.lr: {values: [0.1]}}\n",
        1,
        3,
    ),
    "parameters-block": (
        "name: x\nmethod: coop\nparameters:\n  optim.lr: {values: [0.1]}\n"
        "parameters:\n  method.prompt_length: {values: [2]}\n",
        3,
        5,
    ),
    "in-base": (
        "name: x\nmethod: coop\nbase:\n  train.epochs: 2\n  'train.epochs': 3\n"
        "parameters: {optim.lr: {values: [0.1]}}\n",
        4,
        5,
    ),
    "in-a-distribution": (
        "name: x\nmethod: coop\nparameters:\n  optim.lr: {values: [0.1], values: [0.2]}\n",
        4,
        4,
    ),
}
DUPLICATE_KEYS = {
    "top-level": "name",
    "parameters-block": "parameters",
    "in-base": "base.train.epochs",
    "in-a-distribution": "parameters.optim.lr.values",
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_key_given_twice_is_refused_naming_both_lines(case, in_tmp, capsys):
    """YAML keeps the last of two equal keys silently (half a search space could vanish)."""
    text, first, again = DUPLICATES[case]
    path = in_tmp / "dup.yaml"
    path.write_text(text)
    assert main(["search", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    key = DUPLICATE_KEYS[case]
    assert f"{path}:{again}: {key}: duplicate key (lines {first} and {again})" in err
    assert "Traceback" not in err and "first trial's config" not in capsys.readouterr().out
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "results").exists()


MAPLE_TINY_CLIP = "name: x\nmethod: maple\nbase: {backbone: tiny_clip, method.prompt_depth: 7}\n"


@pytest.mark.parametrize("limit", [12, 1], ids=["every-combination", "one-value-at-a-time"])
def test_a_base_value_that_every_trial_replaces_is_not_checked(limit, tmp_path, monkeypatch):
    """Depth 7 exceeds tiny_clip's 4 layers, but every trial searches the depth."""
    monkeypatch.setattr(check_trials, "MAX_COMBINATIONS", limit)
    path = tmp_path / "replaced.yaml"
    path.write_text(
        MAPLE_TINY_CLIP + "parameters:\n  method.prompt_depth: {values: [1, 3]}\n"
        "  optim.lr: {values: [0.1, 0.01]}\n"
    )
    spec = specs.load(path)
    assert [p.key for p in spec.parameters] == ["method.prompt_depth", "optim.lr"]
    path.write_text(path.read_text().replace("[0.1, 0.01]", "[0.1, -1.0]"))
    with pytest.raises(SpecError) as info:  # a searched value is still checked, and named
        specs.load(path)
    assert [(p.key, p.line) for p in info.value.problems] == [("parameters.optim.lr", 6)]
    assert "value -1.0: optim.lr must be > 0" in str(info.value)


def test_a_base_value_that_some_trial_keeps_is_still_refused(tmp_path):
    path = tmp_path / "kept.yaml"
    path.write_text(MAPLE_TINY_CLIP + "parameters: {optim.lr: {values: [0.1, 0.01]}}\n")
    with pytest.raises(SpecError) as info:  # every trial keeps it: the base is named
        specs.load(path)
    reason = "method.prompt_depth: 7 exceeds the backbone's 4 layers"
    assert str(info.value) == f"{path}:3: base: {reason}"
    path.write_text(
        MAPLE_TINY_CLIP + "ablation:\n  design: ofat\n  base: {optim.lr: 0.1}\n"
        "  variants:\n    shallow: {method.prompt_depth: 1}\n"
    )
    with pytest.raises(SpecError) as info:  # the ablation's base variant keeps it
        specs.load(path)
    assert str(info.value) == f"{path}:4: ablation: value 'base': {reason}"


def test_problems_are_listed_in_line_order(tmp_path):
    path = tmp_path / "order.yaml"  # checked in another order: name, metric, seeds, search
    path.write_text(
        "search: {algorithm: bayes}\nseeds: []\nmetric: {goal: up}\nmethod: coop\nname: ../x\n"
        "parameters: {optim.lr: {values: [0.1]}}\n"
    )
    with pytest.raises(SpecError) as info:
        specs.load(path, ["no-equals-sign"])
    problems = info.value.problems
    assert [p.line for p in problems] == [1, 2, 3, 5, None]  # without a line: last
    assert [p.key for p in problems] == [
        *("search.algorithm", "seeds", "metric.goal", "name", "overrides")
    ]
    assert str(info.value).splitlines()[0].startswith(f"{path}:1: search.algorithm: ")
