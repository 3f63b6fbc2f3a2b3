"""The command line as a user meets it: help texts, errors for unknown names, -q / -v, and the
end-of-study summary as the last thing printed."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.cli import build_parser, main
from ablate.cli.methods import describe_method
from ablate.cli.review import recorded_uri
from ablate.cluster import access, jobs, submit
from ablate.search import driver

REPO = Path(__file__).resolve().parents[3]
COLUMNS = 80


# ---- help -----------------------------------------------------------------------------------
def every_parser() -> dict[str, argparse.ArgumentParser]:
    """`ablate`, each command and each nested action (`data check`), by its full name."""
    found = {}
    pending = [("ablate", build_parser())]
    while pending:
        name, parser = pending.pop()
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return found


@pytest.fixture
def helps(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("COLUMNS", str(COLUMNS))
    return {name: parser.format_help() for name, parser in every_parser().items()}


def test_every_help_fits_the_terminal_and_reads_as_written(helps):
    assert {"ablate search", "ablate data check", "ablate methods"} <= set(helps)
    for name, text in helps.items():
        assert "%%" not in text, name
        long = [line for line in text.splitlines() if len(line) > COLUMNS]
        assert not long, (name, long)
        for line in text.splitlines():
            # an example line continued with a bare backslash ran into the next one
            assert not re.search(r"\S {3,}--", line), (name, line)
    assert "95% CIs" in helps["ablate report"]


def test_every_command_says_what_it_does(helps):
    for name, parser in every_parser().items():
        assert parser.description and len(parser.description) > 30, name


def test_shared_options_are_declared_once(helps):
    texts: dict[str, set[str]] = {}
    for name, parser in every_parser().items():
        for action in parser._actions:
            for option in ("--tracking-uri", "--results-dir"):
                if option in action.option_strings:
                    texts.setdefault(option, set()).add(action.help or "")
                    texts.setdefault(f"{option} in", set()).add(name)
    assert len(texts["--tracking-uri in"]) >= 5
    assert len(texts["--tracking-uri"]) == 1 and len(texts["--results-dir"]) == 1


def test_the_examples_point_to_ablates_own_commands(helps):
    top = helps["ablate"]
    assert "ablate ui quickstart" in top and "mlflow ui" not in top
    submit_example = "ablate submit search_spaces/quickstart.yaml"
    assert submit_example in helps["ablate submit"]
    for name in ("status", "logs", "stop"):  # each its own example, not submit's epilog again
        assert submit_example not in helps[f"ablate {name}"]
        assert f"ablate {name} quickstart" in helps[f"ablate {name}"]


def test_help_imports_no_heavy_dependency():
    code = (
        "import sys; from ablate.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'hydra') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


def test_methods_show_every_knob_with_its_default_and_help(monkeypatch, capsys):
    import trainers
    from trainers.methods.base import knob_help

    monkeypatch.setenv("COLUMNS", str(COLUMNS))
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= COLUMNS
    flat = " ".join(out.split())
    for name in trainers.list_methods():
        config = trainers.get_method(name).Config
        for field in dataclasses.fields(config):
            assert f"method.{field.name} = " in out, (name, field.name)
            text = knob_help(config, field.name)
            assert " ".join(text.split()) in flat if text else "(no help)" in flat


def test_a_knob_without_help_says_so():
    @dataclasses.dataclass
    class Config:
        plain: int = 3

    method = type("Method", (), {"Config": Config, "__module__": __name__})
    text = describe_method("plain", method)
    assert "method.plain = 3" in text and "(no help)" in text


# ---- errors -------------------------------------------------------------------------------------
def test_errors_have_a_plain_header(in_tmp, capsys):
    (in_tmp / "bad.yaml").write_text("name: bad\nmethod: nosuch\n")
    assert main(["search", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: ") and "SpecError" not in err
    assert "bad.yaml" in err


@pytest.fixture
def no_cluster(monkeypatch):
    """Nothing answers at the default dashboard address (a laptop)."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    for module in (access, jobs, submit):
        monkeypatch.setattr(module, "DEFAULT_ADDRESS", nowhere)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return nowhere


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMANDS = [["ui", "nosuch"], ["ui"], ["sync", "nosuch"], ["report", "nosuch"], ["status"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_study_in_an_empty_folder_creates_nothing(command, in_tmp, no_cluster, capsys):
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: no ")
    assert "none" in err  # there is no study to name
    assert list(in_tmp.iterdir()) == []  # no mlflow.db, no results/


def test_an_unknown_study_names_the_ones_there_are(in_tmp, no_cluster, capsys):
    from mlflow.tracking import MlflowClient

    for name in ("alpha", "beta"):
        (in_tmp / "results" / name).mkdir(parents=True)
        state = {"tracking_uri": f"sqlite:///{in_tmp / 'mlflow.db'}"}
        (in_tmp / "results" / name / "study.json").write_text(json.dumps(state))
    MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}").create_experiment("alpha")
    before = sorted(p for p in in_tmp.rglob("*"))
    for command in COMMANDS[:1] + COMMANDS[2:]:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "alpha" in err, (command, err)
    assert sorted(p for p in in_tmp.rglob("*")) == before


def test_ui_finds_the_store_a_study_was_run_with(tmp_path):
    state = {"tracking_uri": "http://mlflow.example:5000"}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text(json.dumps(state))
    assert recorded_uri(tmp_path, "s") == "http://mlflow.example:5000"
    assert recorded_uri(tmp_path, "other") is None


# ---- -q and -v ---------------------------------------------------------------------------------
@pytest.fixture
def finished_study(in_tmp, monkeypatch):
    """A study whose study.json says it finished with this very file: `ablate search` prints
    its plan and says so, with Ray left out (the fast path through run_search)."""
    from ablate import spec as specs

    path = in_tmp / "study.yaml"
    path.write_text(
        "name: done\nmethod: coop\nbase: {train.epochs: 1}\n"
        "parameters:\n  optim.lr: {values: [0.01]}\n"
        "search: {algorithm: grid}\nscheduler: {type: none}\n"
    )
    state = {
        "spec_sha256": specs.load(path).sha256,
        "tracking_uri": f"sqlite:///{(in_tmp / 'mlflow.db').resolve()}",
        "experiment_id": "1",
        "parent_run_id": "x",
        "ray_dir": str(in_tmp / "results/done/ray/done"),
        "status": "finished",
    }
    (in_tmp / "results/done").mkdir(parents=True)
    (in_tmp / "results/done/study.json").write_text(json.dumps(state))
    monkeypatch.setattr(driver.tuning, "connect", lambda address: None)
    monkeypatch.setattr(driver.tuning, "disconnect", lambda: None)
    monkeypatch.setattr(driver.nodes, "check_resources", lambda spec: None)
    monkeypatch.setattr(driver, "check_cluster", lambda storage, uri: None)
    return path


@pytest.mark.parametrize("flag", ["-q", "", "-v"])
def test_quiet_and_verbose(flag, finished_study, capsys):
    assert main(["search", str(finished_study), *([flag] if flag else [])]) == 0
    out = capsys.readouterr().out
    assert "already finished with this file" in out  # the result, always
    assert ("study      done" in out) == (flag != "-q")  # the plan
    assert ("MLflow at sqlite:///" in out) == (flag == "-v")  # details
    if flag == "-q":
        assert out.splitlines()[0].startswith("ablate: study 'done' already finished")


def run_study_process(folder: Path, name: str, *flags: str) -> list[str]:
    """`ablate search` of a 2-trial study in its own process; its non-empty output lines."""
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\nmethod: coop\nbase: {{train.epochs: 2, dataset.shots: 2}}\n"
        "parameters:\n  optim.lr: {values: [0.01, 0.1]}\n"
        "seeds: [1]\nsearch: {algorithm: grid, max_concurrent: 2}\nscheduler: {type: none}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # Ray's default deduplication, but holding repeated lines back for a minute (not 5 s), so
    # that those of the last epochs still wait when the study ends; one unbuffered stream, so
    # that what comes last is what was written last
    env |= {"RAY_DEDUP_LOGS": "1", "RAY_DEDUP_LOGS_AGG_WINDOW_S": "60", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "search", f"{name}.yaml", *flags],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    return [line for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_summary_is_the_last_thing_printed(tmp_path):
    """Real studies in their own process: Ray's held-back log lines come before the summary,
    Tune's tables show the searched parameters only (not the internal trial number), and with
    -q the summary is all there is."""
    lines = run_study_process(tmp_path, "last")
    start = max(i for i, line in enumerate(lines) if line.startswith("Study 'last' finished"))
    assert lines[-1].strip() == "review with: ablate ui last", lines[start:]
    text = "\n".join(lines)
    assert "'trial'" not in text and not re.search(r"│ trial\s", text)
    assert "t000" in text and "t001" in text
    assert "Checkpoint successfully created" not in text  # Tune's line per epoch of a trial
    assert "Study.stop" not in text  # Optuna's refusal when the grid's last trial ends
    # Tune's "Current best trial: <Tune's id>" gave way to ablate's line, whose best is the
    # summary's
    assert "Current best trial" not in text
    best = re.findall(r"best is (t\d+) with", text)
    assert len(best) == 2 and f"Best configuration: {best[-1]}," in text

    quiet = run_study_process(tmp_path, "quiet", "-q")
    assert quiet[0].startswith("Study 'quiet' finished"), quiet[:5]
    assert quiet[-1].strip() == "review with: ablate ui quiet"
