"""Search-space files: every shipped one validates; every bad one gets its own clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ablate import spec as specs
from ablate.cli import main
from ablate.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
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
