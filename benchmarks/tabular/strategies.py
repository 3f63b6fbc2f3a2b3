"""The searches the tabular benchmark replays, each returning its `Event`s in consumed order.

- `ablate_tune`: Ray Tune with the searcher and scheduler `ablate search` builds for the study
  (as `ablate.search.tuning` does: the sampler of `space.make_sampler` behind `OptunaSearch` and
  a concurrency limit, ablate's scheduler on epochs, workers reused), and a
  trainable that reports the seed mean read from the table each epoch (with a checkpoint where
  HyperBand pauses and resumes trials). Left out: ablate's logging (MLflow, Parquet).
- `ablate_cli`: the real `ablate search` (replay trainer via $ABLATE_REPLAY); its events are read
  back from the MLflow store (each trial run's val/hm history with its timestamps).
- `optuna_plain`: Optuna as its users run it, no Ray: TPESampler and a pruner, one seed per trial.
- `tune_default`: Ray Tune's defaults: random search (BasicVariantGenerator) + ASHAScheduler
  (grace 1, reduction factor 4) on one seed (with `reuse_actors`, only to save time).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import cloudpickle, tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from scoring import VAL, Event

from ablate.search import replay, space, tuning
from ablate.spec import StudySpec

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import it


def _trainable(table_path: str, seeds: list[int], log: str, epochs: int, pauses: bool) -> Any:
    """Reports the seed mean of the table's val/hm each epoch; with a checkpoint per epoch only
    where the scheduler pauses and resumes trials (HyperBand): it changes no decision."""

    def trainable(params: dict[str, Any]) -> None:
        values = space.decode(dict(params))
        table = replay.load_table(Path(table_path))
        curves = [table.curve(values, s) for s in seeds]
        key = replay.config_key({k: values[k] for k in table.parameters})
        first = _restored_epoch() + 1
        trial = tune.get_context().get_trial_id()
        for epoch in range(first, epochs + 1):
            val = sum(c[epoch - 1][VAL] for c in curves) / len(curves)
            line = json.dumps([time.time_ns(), trial, key, epoch, len(seeds), val])
            with open(log, "a") as f:
                f.write(line + "\n")
            if not pauses:
                tune.report({VAL: val})
                continue
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "epoch").write_text(str(epoch))
                tune.report({VAL: val}, checkpoint=tune.Checkpoint.from_directory(folder))

    return trainable


def _restored_epoch() -> int:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        return int((Path(folder) / "epoch").read_text())


def _events(log: Path) -> list[Event]:
    lines = sorted(json.loads(line) for line in log.read_text().splitlines())
    return [Event(trial, key, epoch, seeds, val) for _, trial, key, epoch, seeds, val in lines]


def ablate_tune(spec: StudySpec, table_path: Path, folder: Path) -> list[Event]:
    epochs, pauses = spec.max_epochs(), spec.scheduler.type == "hyperband"
    log = folder / "events.jsonl"
    log.touch()
    body = _trainable(str(table_path), spec.seeds, str(log), epochs, pauses)
    tuner = tune.Tuner(
        tune.with_resources(body, {"cpu": 1}),
        tune_config=ablate_tune_config(spec, epochs),
        run_config=tune.RunConfig(storage_path=str(folder), name="ray", verbose=0),
    )
    tuner.fit()
    return _events(log)


def ablate_tune_config(spec: StudySpec, epochs: int) -> tune.TuneConfig:
    """What `ablate.search.tuning` builds for a study (searcher, limit, scheduler, samples), but
    with Ray's plain `OptunaSearch`: ablate's subclass only notes trial numbers for names."""
    searcher = OptunaSearch(
        space=space.to_distributions(spec.search_parameters()),
        sampler=space.make_sampler(spec),
        metric=spec.metric.name,
        mode=spec.metric.mode,
    )
    ranked = {"metric": spec.metric.name, "mode": spec.metric.mode}
    return tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
        scheduler=tuning.make_scheduler(spec.scheduler, epochs, ranked),
        num_samples=spec.num_trials,
        reuse_actors=True,
    )


def tune_default(
    spec: StudySpec, table_path: Path, folder: Path, seed: int, sampler_seed: int
) -> list[Event]:
    epochs = spec.max_epochs()
    log = folder / "events.jsonl"
    log.touch()
    param_space = {p.key: tune.choice(list(p.values)) for p in spec.search_parameters()}
    body = _trainable(str(table_path), [seed], str(log), epochs, False)
    tuner = tune.Tuner(
        tune.with_resources(body, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=VAL,
            mode="max",
            num_samples=spec.num_trials,
            scheduler=tune.schedulers.ASHAScheduler(max_t=epochs),
            search_alg=tune.search.BasicVariantGenerator(random_state=sampler_seed),
            reuse_actors=True,  # not Tune's default; changes no decision, saves a process a trial
        ),
        run_config=tune.RunConfig(storage_path=str(folder), name="ray", verbose=0),
    )
    tuner.fit()
    return _events(log)


def optuna_plain(
    spec: StudySpec, table_path: Path, seed: int, sampler_seed: int, pruner: str
) -> list[Event]:
    epochs, table = spec.max_epochs(), replay.load_table(table_path)
    choices = {p.key: list(p.values) for p in spec.search_parameters()}
    events: list[Event] = []

    def objective(trial: optuna.Trial) -> float:
        values = {k: trial.suggest_categorical(k, v) for k, v in choices.items()}
        curve, key = table.curve(values, seed), replay.config_key(values)
        for epoch in range(1, epochs + 1):
            val = curve[epoch - 1][VAL]
            events.append(Event(str(trial.number), key, epoch, 1, val))
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        return val

    pruners = {
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
        "sha": optuna.pruners.SuccessiveHalvingPruner(),
    }
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=pruners[pruner],
    )  # fmt: skip
    study.optimize(objective, n_trials=spec.num_trials)
    return events


def ablate_cli(spec: StudySpec, study_file: Path, folder: Path) -> list[Event]:
    """The real `ablate search` in this process (Ray already started with $ABLATE_REPLAY set),
    its events read back from the MLflow store: each trial run's val/hm history, timestamped."""
    import os

    from mlflow.tracking import MlflowClient

    from ablate.cli import main

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["search", "-q", str(study_file)]) == 0
    finally:
        os.chdir(cwd)
    table = replay.load_table(replay.table_path())
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'trial'")
    lines = []
    for run in runs:
        key = replay.config_key({k: run.data.params[k] for k in table.parameters})
        for m in client.get_metric_history(run.info.run_id, VAL):
            lines.append((m.timestamp, run.info.run_id, key, m.step, len(spec.seeds), m.value))
    return [Event(*line[1:]) for line in sorted(lines)]


__all__ = ["ablate_cli", "ablate_tune", "optuna_plain", "ray", "tune_default"]
