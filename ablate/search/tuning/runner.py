"""Ray Tune's study: run a validated study and collect its outcome.

The searcher is always Ray's `OptunaSearch` with the sampler from `space.make_sampler` (tpe,
random or grid), behind a `ConcurrencyLimiter`; the scheduler is built from its entry in
`spec.schedulers`, with the epoch (one `report` per epoch) as the fidelity. Final MLflow statuses
are written from the driver (`callbacks.StatusCallback`), because a stopped trial's worker may
never run another line.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ablate import results
from ablate.cluster import nodes
from ablate.search import failures, space
from ablate.search.outcome import StudyOutcome, TrialOutcome, error_line, status_of, trial_name
from ablate.search.resume import Launch, Prior
from ablate.search.tuning.callbacks import DiskWatch, PendingNotice, StatusCallback
from ablate.search.tuning.connection import reenter_working_dir, tune_verbosity
from ablate.search.tuning.ray_api import (
    ConcurrencyLimiter,
    JsonLoggerCallback,
    OptunaSearch,
    TrialScheduler,
    tune,
    tune_schedulers,
)
from ablate.search.tuning.trainable import (
    FIDELITY,
    TRIAL_NUMBER,
    epoch_of,
    make_trainable,
    trial_resources,
)
from ablate.spec import Scheduler, StudySpec, schedulers
from ablate.tracking import Tracker

log = logging.getLogger("ablate")
_NUMBERS: dict[str, int] = {}  # Ray trial id -> Optuna's trial number 0, 1, 2, ... (names t000)


def make_scheduler(
    s: Scheduler, epochs: int, ranked: dict[str, str] | None = None
) -> TrialScheduler:
    """The Ray scheduler of the study's `scheduler.type`, from its entry in `spec.schedulers`;
    one that ranks trials is given `ranked` (its metric and mode) where Tune is not."""
    entry = schedulers.SCHEDULERS[s.type]
    kwargs = entry.kwargs(s, epochs) | ({"time_attr": FIDELITY} if entry.fidelity else {})
    kwargs |= ranked if ranked and entry.ranks else {}
    return getattr(tune_schedulers, entry.ray_class)(**kwargs)


def run_study(
    spec: StudySpec,
    tracker: Tracker,
    study_dir: results.Location,
    launch: Launch,
    system_metrics: bool = False,
) -> StudyOutcome:
    epochs = spec.max_epochs()
    # of Tune's per-trial loggers only the JSON one (params.json, result.json: what
    # `trained_configs` reads); TensorBoard's event writer took a fifth of a large study's driver
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # a trial that gives up after its retries returns without a report (failures.py); Tune's
    # result for it is then its config, which Tune's check for the metric took for a bad
    # result (two or more searched parameters) and ended the whole study. ablate checks the
    # metric's name against the method before launching.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Optuna set its own level when Ray imported it; it follows ablate's -q / -v from here
    logging.getLogger("optuna").setLevel(logging.INFO if tune_verbosity() > 1 else logging.WARNING)
    logging.getLogger(OptunaSearch.__module__).addFilter(_NO_GRID_STOP)
    if tune_verbosity() == 0:  # Tune's new console output prints its header even then
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    guard = StatusCallback(
        tracker,
        epochs,
        min(3, spec.num_trials),
        study_dir=study_dir,
        retries=spec.retries,
        objective=None if spec.more_objectives else (spec.metric.name, spec.metric.mode),
    )
    pending = PendingNotice(nodes.wanted(spec))
    trainable = tune.with_resources(
        make_trainable(spec, tracker, study_dir, system_metrics), trial_resources(spec)
    )
    if launch.restore:
        tuner = tune.Tuner.restore(str(launch.ray_dir), trainable, resume_unfinished=True)
    else:
        storage_path, _, name = str(launch.ray_dir).rstrip("/").rpartition("/")
        tuner = tune.Tuner(
            trainable,
            tune_config=_tune_config(spec, epochs, launch),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage_path,
                # every failure alike: the trial's own past `retries` never reach Tune
                # (ablate.search.failures), so what is left is for lost workers and nodes
                failure_config=tune.FailureConfig(
                    max_failures=spec.retries + failures.LOST_WORKERS
                ),
                # a trial's Tune checkpoints are a few bytes each (trial_state holds the
                # state), all kept: pruning them forced a snapshot of the experiment per epoch
                callbacks=[guard, pending, DiskWatch(study_dir), JsonLoggerCallback()],
                stop=guard,
                verbose=tune_verbosity(),
            ),
        )
    grid = tuner.fit()
    guard.settle()
    _let_workers_finish(grid)
    reenter_working_dir()  # a node that joined during the study may have unpacked it anew
    outcome = _outcome(grid, spec, guard.statuses, epochs, study_dir)
    for t in outcome.trials:
        t.node = guard.nodes.get(t.trial_id, "")
    outcome.stopped_early = guard.stop_all()
    return outcome


class _NoGridStop(logging.Filter):
    """Optuna's GridSampler ends a finished grid with `study.stop()`, which Optuna allows only
    inside `optimize`. Under Tune the grid ends by itself (num_samples), and Optuna stores the
    last trial's result before the refusal, so Ray's warning of it told the user nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`Study.stop` is supposed to be invoked" not in record.getMessage()


_NO_GRID_STOP = _NoGridStop()


def _let_workers_finish(grid: Any, timeout: float = 30.0) -> None:
    """Wait for the trials' worker processes on this machine to exit. Tune has ended them
    gracefully, and a worker makes its tracking calls in flight first (`tracking.Outbox`: a
    trial the scheduler stopped sends its last prompts then); letting go of Ray before that
    would kill it mid-call."""
    host = socket.gethostname()
    last = [r.metrics or {} for r in grid]
    pids = {int(m["pid"]) for m in last if m.get("hostname") == host and m.get("pid")}
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if _alive(pid)}
        if pids:
            time.sleep(0.02)
    if pids:
        log.debug("ablate: trial workers %s still running after %.0f s", sorted(pids), timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now has the number
        return False
    return True


def _tune_config(spec: StudySpec, epochs: int, launch: Launch) -> tune.TuneConfig:
    prior = launch.prior
    rewarded = prior is not None and prior.rewards is not None
    redo = prior.redo if prior else []  # configurations whose rows were lost: trained again
    searcher = NumberedOptunaSearch(
        space=space.to_distributions(spec.search_parameters()),
        sampler=space.make_sampler(spec, launch.invocation),
        **_objectives(spec),
        points_to_evaluate=redo or (prior.configs if prior and not rewarded else None),
        finished=prior if rewarded else None,
    )
    # Tune is told no metric: the searcher and the scheduler are, so Tune's console names no
    # "current best trial" by its own id and rule (StatusCallback says ablate's). Several
    # objectives go to the searcher only (as Ray's OptunaSearch asks), and validation admits
    # only a scheduler that ranks nothing.
    ranked = None if spec.more_objectives else _objectives(spec)
    return tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
        scheduler=make_scheduler(spec.scheduler, epochs, ranked),
        num_samples=spec.num_trials if launch.num_trials is None else launch.num_trials,
        trial_name_creator=_name_of,
        trial_dirname_creator=lambda t: f"{_name_of(t)}_{t.trial_id}",
        # one machine: a worker process runs trial after trial, and its imports, backbone,
        # decoded dataset and frozen features stay loaded (trial_body.shared_inputs); on a
        # multi-node cluster each trial is placed afresh so the trials spread over the nodes
        reuse_actors=nodes.node_count() == 1,
    )


class NumberedOptunaSearch(OptunaSearch):
    """OptunaSearch that notes Optuna's trial number of each trial, to name trials by it. The
    number stays out of the config, so Tune's tables show only the searched parameters. The
    Optuna storage is ours, so the number is read through Optuna's public API; it is pickled with
    the searcher's state, so a restored study numbers on."""

    def __init__(self, finished: Prior | None = None, **kwargs: Any) -> None:
        self.optuna_storage = space.new_storage()
        super().__init__(storage=self.optuna_storage, study_name=space.STUDY_NAME, **kwargs)
        if finished is not None and finished.rewards is not None:  # completed trials, warm start
            dists = kwargs["space"]
            space.add_finished(self.optuna_storage, dists, finished.configs, finished.rewards)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id not in _NUMBERS:
            _NUMBERS[trial_id] = space.newest_trial_number(self.optuna_storage)
        return config


def _objectives(spec: StudySpec) -> dict[str, Any]:
    """metric and mode: one name and mode, or a list of each for several objectives."""
    if not spec.more_objectives:
        return {"metric": spec.metric.name, "mode": spec.metric.mode}
    return {"metric": [o.name for o in spec.objectives], "mode": [o.mode for o in spec.objectives]}


def _name_of(trial: Any) -> str:
    """`t007` for Optuna's trial 7 (Tune names a trial right after the searcher suggests it)."""
    number = _NUMBERS.get(trial.trial_id, trial.config.get(TRIAL_NUMBER))
    return trial_name(number)


def trained_configs(study_dir: results.Location) -> list[dict[str, Any]]:
    """The configurations (as the searcher suggested them) of every trial that reported an
    epoch in any Ray experiment of the study: what the results table should hold rows of.
    Read from each trial folder's params.json and result.json; [] on an object store."""
    if results.is_uri(study_dir):
        return []
    configs = []
    for params in sorted(Path(study_dir, "ray").glob("*/*/params.json")):
        reported = params.with_name("result.json")
        if not reported.is_file() or reported.stat().st_size == 0:
            continue  # failed before its first epoch: it has no rows to lose
        try:
            config = json.loads(params.read_text())
        except ValueError:
            continue
        config.pop(TRIAL_NUMBER, None)
        if config not in configs:
            configs.append(config)
    return configs


def _trial_id_from_path(path: str) -> str:
    return Path(path).name.rsplit("_", 1)[-1]  # trial_dirname_creator: t007_<trial_id>


def _outcome(
    grid: Any,
    spec: StudySpec,
    statuses: dict[str, str],
    epochs: int,
    study_dir: results.Location,
) -> StudyOutcome:
    outcome = StudyOutcome()
    # Tune's statuses of this invocation's trials and of those an earlier one finished
    analysis = tune.ExperimentAnalysis(grid.experiment_path, storage_filesystem=grid.filesystem)
    ray_status = {t.trial_id: t.status for t in analysis.trials}
    for result in grid:
        metrics = result.metrics or {}
        config = dict(result.config or {})
        trial_id = metrics.get("trial_id") or _trial_id_from_path(result.path)
        reached = epoch_of(metrics)
        status = statuses.get(trial_id) or status_of(
            ray_status.get(trial_id), result, reached, epochs
        )
        # a trial that failed past its retries ended without raising (failures.py)
        gave_up = failures.gave_up(study_dir, trial_id, spec.retries)
        status = "failed" if gave_up else status
        config.pop(TRIAL_NUMBER, None)
        outcome.trials.append(
            TrialOutcome(
                trial_id=trial_id,
                name=Path(result.path).name.rsplit("_", 1)[0],  # trial_dirname_creator: t007_id
                status=status,
                epochs=reached,
                params=space.decode(config),
                metrics=_seed_means(metrics),
                error=gave_up or (error_line(str(result.error)) if result.error else ""),
            )
        )
    outcome.trials.sort(key=lambda t: t.name)
    return outcome


def _seed_means(reported: dict[str, Any]) -> dict[str, float]:
    """The metrics of a trial's last report (their names have a slash: val/hm, cost/params)."""
    return {
        k: float(v)
        for k, v in reported.items()
        if "/" in k and isinstance(v, int | float) and not isinstance(v, bool)
    }
