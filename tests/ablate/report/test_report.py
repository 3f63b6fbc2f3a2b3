"""`ablate report` on synthetic results tables with known effects: the statistics, the tables,
optuna.db, the self-contained HTML page in headless Chromium, and the artifacts in MLflow."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ablate import report, results, tracking
from ablate.report import analysis
from ablate.search.resume import StudyState

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SEEDS = (1, 2, 3, 4, 5)
EPOCHS = 3
# variant -> true effect on every metric; per-seed noise is small next to -5, large next to +0.1
VARIANTS = {"base": 0.0, "short-prompt": -5.0, "shallow": 0.1, "deep": 2.0}


def _row(trial: str, key: str, seed: int, epoch: int, status: str, level: float) -> dict:
    return {
        "study": "abl", "trial_id": f"id-{trial}", "trial_name": trial, "trial_key": key,
        "seed": seed, "epoch": epoch, "wall_s": float(epoch), "status": status,
        "val/base": level + 2.0, "val/new": level - 2.0, "val/hm": level,
        "train/loss": 1.0 / epoch,
    }  # fmt: skip


def ablation_rows(rng: np.random.Generator) -> list[dict]:
    """An ofat ablation: base, then three variants, five seeds, test/* on the last epoch; the
    seed effect is shared by all variants (so the pairing matters), plus small noise."""
    seed_effect = {s: rng.normal(0, 2.0) for s in SEEDS}
    rows = []
    for t, (variant, effect) in enumerate(VARIANTS.items()):
        for seed in SEEDS:
            for epoch in range(1, EPOCHS + 1):
                level = 60 + effect + seed_effect[seed] + 3 * epoch + rng.normal(0, 0.3)
                row = _row(f"t{t:03d}", f"k{t}", seed, epoch, "completed", level)
                row |= {"variant": variant, "diag/prompt_cos_mean": 0.5 + 0.1 * t}
                if epoch == EPOCHS:
                    row |= {"test/base": level + 1, "test/new": level - 3, "test/hm": level - 1}
                rows.append(row)
    return rows


def write_study(folder: Path, rows: list[dict]) -> Path:
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    for trial_id, mine in by_trial.items():
        results.write_part(mine, folder, trial_id)
    results.compact(folder)
    return folder


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> report.Analysis:
    folder = write_study(
        tmp_path_factory.mktemp("r") / "abl", ablation_rows(np.random.default_rng(0))
    )
    return report.analyse(report.StudyInfo("abl", folder))


def test_means_and_cis_are_the_t_intervals_over_seeds(ablation):
    base = ablation.configs[0]
    assert base.factors["variant"] == "base"
    values = base.seed_values("test/hm")
    assert len(values) == len(SEEDS)
    mean, half = analysis.mean_ci(values)
    sd = float(np.std(values, ddof=1))
    assert half == pytest.approx(2.776445 * sd / math.sqrt(5), rel=1e-5)  # t(0.975, 4)
    assert mean == pytest.approx(np.mean(values))
    assert 60 + 3 * EPOCHS - 1 - 5 < mean < 60 + 3 * EPOCHS - 1 + 5
    assert ablation.table.split == "test"
    assert ablation.table.metrics == ["test/base", "test/new", "test/hm"]


def test_deltas_and_holm_corrected_decisions(ablation):
    table = ablation.table
    labels = [c.label for c in table.configs]
    assert labels[0] == "base" and set(labels[1:]) == {"short-prompt", "shallow", "deep"}
    comps = {c.label: table.comparisons[i]["test/hm"] for i, c in enumerate(table.configs)}
    assert comps["short-prompt"].delta == pytest.approx(-5.0, abs=0.6)
    assert comps["deep"].delta == pytest.approx(2.0, abs=0.6)
    assert comps["short-prompt"].p_holm < 0.01 and comps["short-prompt"].marker == "**"
    assert comps["deep"].p_holm < 0.05 and comps["deep"].marker
    assert comps["shallow"].p_holm > 0.05 and comps["shallow"].marker == ""
    assert comps["short-prompt"].p_holm >= comps["short-prompt"].p  # Holm never lowers p


def test_holm_and_paired_test_on_known_numbers():
    assert analysis.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(analysis.holm([0.01, math.nan])[1])
    comp = analysis.paired({(None, 1): 2.0, (None, 2): 4.0}, {(None, 1): 1.0, (None, 2): 1.0})
    assert comp.delta == pytest.approx(2.0) and comp.n == 2
    assert comp.p == pytest.approx(0.2952, abs=1e-3)  # diffs 1, 3: t = 2, df = 1


def test_datasets_pair_over_dataset_and_seed():
    rows = []
    for dataset, offset in (("a", 0.0), ("b", 20.0)):
        for variant, effect in (("base", 0.0), ("v", 1.0)):
            for seed in (1, 2, 3):
                row = _row(f"{variant}-{dataset}", f"{variant}{dataset}", seed, 1, "completed", 0)
                row |= {"dataset": dataset, "variant": variant}
                row["val/hm"] = 50 + offset + effect + 0.01 * seed * (1 + (dataset == "b"))
                rows.append(row)
    configs = analysis.order(analysis.configurations(rows, ["dataset", "variant"], ["val/hm"]),
                             "val/hm", "maximize")  # fmt: skip
    assert [c.label for c in configs] == ["base", "v"]
    comp = analysis.compare_all(configs, ["val/hm"])[1]["val/hm"]
    assert comp.n == 6 and comp.delta == pytest.approx(1.0)
    assert len(configs[0].seed_values("val/hm")) == 3  # CI over seeds of the dataset mean


def test_tables_markdown_latex_csv(ablation, tmp_path):
    from ablate.report import tables

    md = tables.to_markdown(ablation.table)
    first = md.splitlines()[2]
    assert first.startswith("| base |") and "±" in first
    assert re.search(r"\| short-prompt \|.*\| -\d\.\d\d\*\* \|", md)
    tex = tables.to_latex(ablation.table, "abl_study")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "tab:abl\\_study" in tex
    assert "^{**}$" in tex and "short-prompt" in tex
    lines = tables.to_csv(ablation.table).splitlines()
    assert lines[0].startswith("configuration,trials,seeds,test/base:mean,test/base:ci95")
    assert len(lines) == 1 + len(VARIANTS)


def hyper_rows(rng: np.random.Generator) -> list[dict]:
    """A TPE-like study: lr helps, prompt_length barely matters; two trials pruned at epoch 1."""
    rows = []
    for t in range(8):
        lr = float(10 ** rng.uniform(-4, 0))
        length = [2, 4, 8][t % 3]
        pruned = t in (2, 5)  # t002 at epoch 1, t005 at epoch 2
        for seed in (1, 2):
            for epoch in range(1, (t // 2 if pruned else EPOCHS) + 1):
                level = 50 + 4 * math.log10(lr) + 2 * epoch + rng.normal(0, 0.2) + 0.1 * length
                row = _row(f"t{t:03d}", f"h{t}", seed, epoch, "pruned" if pruned else "completed",
                           level)  # fmt: skip
                rows.append(row | {"optim.lr": lr, "method.prompt_length": length})
    return rows


@pytest.fixture(scope="module")
def hyper_study(tmp_path_factory) -> tuple[Path, report.StudyInfo]:
    """A written report of the TPE-like study, logged to a real (SQLite) MLflow parent run with
    a seed run holding prompts.json and prompts.pt."""
    root = tmp_path_factory.mktemp("h")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's SQLite store puts artifacts under ./mlruns
        return _hyper_report(root)


def _hyper_report(root: Path) -> tuple[Path, report.StudyInfo]:
    folder = write_study(root / "hyp", hyper_rows(np.random.default_rng(1)))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parent = tracking.Tracker(uri).start_study("hyp", "", {"study.metric": "val/hm (maximize)",
                                                           "study.method": "pmpo"}, {})  # fmt: skip
    StudyState("x", uri, parent.experiment_id, parent.parent_run_id, "", "finished").save(folder)
    info = report.resolve("hyp", root, None)
    best = report.analyse(info).best
    _seed_run_with_prompts(parent, best.trial_keys[0], root)
    out = report.make_report(info)
    return out, info


def _seed_run_with_prompts(parent: tracking.Tracker, key: str, root: Path) -> None:
    import torch

    run = parent.start_run(parent.parent_run_id, "seed", "seed", {"seed": 1},
                           {tracking.TRIAL_KEY: key})  # fmt: skip
    tokens = [[{"token": w, "cosine": 0.5 - 0.1 * i} for i, w in enumerate(["a", "photo", "of"])]]
    described = {"prompts": {"shape": [3, 2, 8], "norms": [1.0] * 6, "nearest_tokens": tokens * 6}}
    parent.log_text(run, json.dumps(described), "prompts.json")
    buffer = root / "prompts.pt"
    torch.save({"prompts": torch.randn(3, 2, 8)}, buffer)
    parent.log_file(run, buffer)


def test_report_files_optuna_db_and_mlflow_artifacts(hyper_study):
    out, info = hyper_study
    names = {p.name for p in out.iterdir()}
    expected = {"report.html", "ablation.md", "ablation.tex", "ablation.csv", "importance.png",
                "factor_effects.png", "learning_curves.png", "parallel_coordinates.png",
                "prompt_similarity.png", "best_prompts.json"}  # fmt: skip
    assert expected <= names, names
    scores = json.loads((out / "importance.json").read_text())["scores"]
    assert set(scores) == {"optim.lr", "method.prompt_length"}
    assert scores["optim.lr"] > scores["method.prompt_length"]
    import optuna

    study = optuna.load_study(study_name="hyp", storage=f"sqlite:///{info.folder}/optuna.db")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 6 and states.count("PRUNED") == 2
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(info.uri)
    logged = {a.path for a in client.list_artifacts(info.parent_run_id, "report")}
    assert {f"report/{n}" for n in expected} <= logged


def test_best_configuration_is_the_reference_without_ablation(hyper_study):
    out, _ = hyper_study
    md = (out / "ablation.md").read_text()
    assert "best configuration by val/hm" in md
    first = md.splitlines()[2]
    lrs = [float(c) for c in re.findall(r"\| (0\.\d+|1\.0|\d\.\d+e-\d+) \|", md)]
    assert first.split("|")[1].strip().startswith("t") and lrs and lrs[0] == max(lrs)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_html_report_renders_in_headless_chromium(hyper_study, tmp_path):
    out, _ = hyper_study
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 5 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    for text in ("Ablation table", "Learning curves", "Parallel coordinates", "Learned prompts"):
        assert text in page
    # the page has no script of its own; count the decoded images from a copy with a probe
    probe = "<script>addEventListener('load',()=>{document.title='loaded:'+[...document.images]" \
            ".filter(i=>i.naturalWidth>0).length})</script>"  # fmt: skip
    copy = tmp_path / "probe.html"
    copy.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
                    .replace("</body>", probe + "</body>"))  # fmt: skip
    dom, errors = _chromium(["--dump-dom", copy.as_uri()], tmp_path)
    assert f"<title>loaded:{len(images)}</title>" in dom
    _, errors = _chromium([f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1200,3000",
                           (out / "report.html").as_uri()], tmp_path)  # fmt: skip
    assert not [line for line in errors if "Uncaught" in line or ":CONSOLE" in line], errors
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def _chromium(args: list[str], tmp: Path) -> tuple[str, list[str]]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]  # fmt: skip
    done = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=60)
    return done.stdout, done.stderr.splitlines()


def test_missing_table_is_a_usage_error(tmp_path):
    from ablate.errors import AblateError

    with pytest.raises(AblateError) as caught:
        report.resolve("nothing", tmp_path, None)
    assert caught.value.exit_code == 2


def test_the_command_line_runs_the_report(tmp_path, capsys):
    from ablate.cli import main

    folder = write_study(tmp_path / "abl", ablation_rows(np.random.default_rng(2)))
    assert main(["report", str(folder), "--no-mlflow", "--importance", "mdi"]) == 0
    assert (folder / "report" / "report.html").exists() and (folder / "optuna.db").exists()
    assert "report of 'abl'" in capsys.readouterr().out


def test_a_protocol_study_tabulates_its_targets_and_average():
    from ablate.report import analysis

    final = [
        {"test/acc": 70.0, "test/caltech101/acc": 90.0, "test/dtd/acc": 40.0,
         "test/cross_dataset/avg": 65.0, "val/acc": 71.0, "train/loss": 1.0}
    ]  # fmt: skip
    split = analysis.choose_split(final, "val/acc")
    assert split == "test"
    assert analysis.split_metrics(final, split) == [
        "test/acc", "test/caltech101/acc", "test/dtd/acc", "test/cross_dataset/avg"
    ]  # fmt: skip
    assert analysis.split_metrics([{"val/base": 1.0, "val/new": 2.0, "val/hm": 1.3}], "val") == [
        "val/base", "val/new", "val/hm"
    ]  # fmt: skip
