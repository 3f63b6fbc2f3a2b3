"""Ray Tune lives here and only here: run a validated study and collect its outcome.

The searcher is always Ray's `OptunaSearch` with the sampler from `space.make_sampler` (tpe,
random or grid), behind a `ConcurrencyLimiter`; the scheduler comes from `SCHEDULERS`, with the
epoch (one `report` per epoch) as the fidelity. Final MLflow statuses are written from the driver
(`callbacks.StatusCallback`), because a stopped trial's worker may never run another line.
A trial's resources come from `resources.trial_resources`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ablate import cluster_nodes, results, space, trial
from ablate.errors import ConfigError
from ablate.spec import Scheduler, StudySpec
from ablate.study.callbacks import FIDELITY, NODE, PendingNotice, StatusCallback, error_line
from ablate.study.resources import TRIAL_NUMBER, trial_resources
from ablate.tracking import Tracker

SCHEDULERS: dict[str, Callable[[Scheduler, int], TrialScheduler]] = {
    "asha": lambda s, epochs: ASHAScheduler(
        time_attr=FIDELITY,
        max_t=epochs,
        grace_period=s.grace_epochs,
        reduction_factor=s.reduction_factor,
    ),
    "median": lambda s, epochs: MedianStoppingRule(
        time_attr=FIDELITY, grace_period=s.grace_epochs, min_samples_required=3
    ),
    "hyperband": lambda s, epochs: HyperBandScheduler(
        time_attr=FIDELITY, max_t=epochs, reduction_factor=s.reduction_factor
    ),
    "none": lambda s, epochs: FIFOScheduler(),
}


@dataclass
class TrialOutcome:
    trial_id: str
    name: str
    status: str  # completed | pruned | failed
    epochs: int
    params: dict[str, Any]
    metric: float | None  # the seed mean of the study metric at the last reported epoch
    error: str = ""
    node: str = ""  # the Ray node id the trial last ran on


@dataclass
class StudyOutcome:
    trials: list[TrialOutcome] = field(default_factory=list)
    stopped_early: bool = False  # every trial so far failed

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.trials)


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray bound to 127.0.0.1."""
    if address and address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address {address} is a Ray dashboard (Jobs API) address: submit the study "
            f"there with `ablate submit FILE --address {address}`, or give `ablate search` the "
            "cluster's GCS address (HEAD:6379) to run the driver here"
        )
    if ray.is_initialized():
        return
    # Ray 2.60 turns token authentication on by default (token in ~/.ray/auth_token, generated
    # on first start); ablate leaves it on and never sets RAY_AUTH_MODE itself.
    if address:
        cwd = os.getcwd()
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as err:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {err}") from err
        except Exception as err:
            if type(err).__name__ != "AuthenticationError":
                raise
            raise ConfigError(
                f"the Ray cluster at {address} refused this driver's token: {err}\n"
                "Ray reads the token from $RAY_AUTH_TOKEN, else the file named by "
                "$RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token; `ray get-auth-token` on the "
                "head node prints the cluster's."
            ) from err
        try:
            os.getcwd()
        except FileNotFoundError:
            # a job's working_dir re-extracted under the driver (eager install by another node
            # on this disk) leaves the driver's cwd dangling; the same path is back
            os.chdir(cwd)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")


def can_restore(ray_dir: Path | str) -> bool:
    """Whether a Ray experiment folder (a path or a URI) holds a study Tuner.restore continues."""
    if not results.is_uri(ray_dir) and not Path(ray_dir).exists():
        return False
    try:
        return tune.Tuner.can_restore(str(ray_dir))
    except Exception:  # an unreachable or foreign storage location: start afresh
        return False


@dataclass
class Prior:
    """Configurations earlier invocations of this study finished (to extend it, not redo it).

    With `rewards`, Optuna is warm-started with them as completed trials; without (new seeds),
    they are evaluated again first, and the trials skip the (configuration, seed) cells that the
    results table already holds.
    """

    configs: list[dict[str, Any]]
    rewards: list[float] | None


@dataclass
class Launch:
    """Where and how this invocation runs: a new Ray experiment, or the restore of one."""

    ray_dir: Path | str  # <results>/<study>/ray/<experiment name>; a URI on shared storage
    restore: bool = False
    prior: Prior | None = None
    num_trials: int | None = None  # None = the file's
    invocation: int = 1  # how many times `ablate search` started this study, this one included


def run_study(
    spec: StudySpec,
    tracker: Tracker,
    study_dir: results.Location,
    launch: Launch,
    system_metrics: bool = False,
) -> StudyOutcome:
    epochs = spec.max_epochs()
    guard = StatusCallback(tracker, epochs, fail_limit=min(3, spec.num_trials))
    pending = PendingNotice(cluster_nodes.wanted(spec))
    trainable = tune.with_resources(
        _make_trainable(spec, tracker, study_dir, system_metrics), trial_resources(spec)
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
                failure_config=tune.FailureConfig(max_failures=spec.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[guard, pending],
                stop=guard,
                verbose=1,
            ),
        )
    grid = tuner.fit()
    outcome = _outcome(grid, spec, guard.statuses, epochs)
    for t in outcome.trials:
        t.node = guard.nodes.get(t.trial_id, "")
    outcome.stopped_early = guard.stop_all()
    return outcome


def _tune_config(spec: StudySpec, epochs: int, launch: Launch) -> tune.TuneConfig:
    prior = launch.prior
    searcher = _NumberedOptunaSearch(
        space=space.to_distributions(spec.search_parameters()),
        sampler=space.make_sampler(spec, launch.invocation),
        metric=spec.metric.name,
        mode=spec.metric.mode,
        points_to_evaluate=prior.configs if prior else None,
        evaluated_rewards=prior.rewards if prior else None,
    )
    return tune.TuneConfig(
        metric=spec.metric.name,
        mode=spec.metric.mode,
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
        scheduler=SCHEDULERS[spec.scheduler.type](spec.scheduler, epochs),
        num_samples=spec.num_trials if launch.num_trials is None else launch.num_trials,
        trial_name_creator=lambda t: trial_name(t.config.get(TRIAL_NUMBER)),
        trial_dirname_creator=lambda t: f"{trial_name(t.config.get(TRIAL_NUMBER))}_{t.trial_id}",
        # one machine: a worker process runs trial after trial, and its imports, backbone,
        # decoded dataset and frozen features stay loaded (ablate.trial.shared_inputs); on a
        # multi-node cluster each trial is placed afresh so the trials spread over the nodes
        reuse_actors=cluster_nodes.node_count() == 1,
    )


def _make_trainable(
    spec: StudySpec, tracker: Tracker, study_dir: results.Location, system_metrics: bool
) -> Callable:
    threads = max(1, int(spec.resources.cpu))
    folder = study_dir if results.is_uri(study_dir) else Path(study_dir).resolve()

    def trainable(params: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(threads)
        params = dict(params)
        name = trial_name(params.pop(TRIAL_NUMBER, None))
        trial_id = tune.get_context().get_trial_id()
        ctx = trial.TrialContext(trial_id, name, folder, tracker, system_metrics)  # type: ignore[arg-type]
        trial.run(spec, params, _report_with_checkpoint, ctx, resume=_restore())

    return trainable


STATE_FILE = "state.pt"


def _report_with_checkpoint(metrics: dict[str, float], state: dict[str, Any]) -> None:
    """tune.report with the trial's state as a checkpoint, so a paused or restarted trial
    (HyperBand and median stopping pause; failures retry) continues where it stopped."""
    import torch

    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        checkpoint = tune.Checkpoint.from_directory(folder)
        tune.report({**metrics, NODE: node}, checkpoint=checkpoint)


def _restore() -> dict[str, Any] | None:
    import torch

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=False)


def trial_name(number: int | None) -> str:
    """Optuna's trial number 7 -> `t007`: names that sort in the order trials were sampled."""
    return "t???" if number is None else f"t{number:03d}"


class _NumberedOptunaSearch(OptunaSearch):
    """OptunaSearch that adds Optuna's trial number to each config, to name trials by it."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config[TRIAL_NUMBER] = self._ot_trials[trial_id].number
        return config


def _status(ray_status: str | None, result: Any, reached: int, epochs: int) -> str:
    if result.error or ray_status == "ERROR":
        return "failed"
    if ray_status != "TERMINATED":
        return "unfinished"  # the study was interrupted while this trial ran or waited
    return "completed" if reached >= epochs else "pruned"


def _trial_id_from_path(path: str) -> str:
    return Path(path).name.rsplit("_", 1)[-1]  # trial_dirname_creator: t007_<trial_id>


def _outcome(grid: Any, spec: StudySpec, statuses: dict[str, str], epochs: int) -> StudyOutcome:
    outcome = StudyOutcome()
    ray_status = {t.trial_id: t.status for t in grid._experiment_analysis.trials}
    for result in grid:
        metrics = result.metrics or {}
        config = dict(result.config or {})
        trial_id = metrics.get("trial_id") or _trial_id_from_path(result.path)
        reached = int(metrics.get(FIDELITY, 0))
        status = statuses.get(trial_id) or _status(
            ray_status.get(trial_id), result, reached, epochs
        )
        outcome.trials.append(
            TrialOutcome(
                trial_id=trial_id,
                name=trial_name(config.pop(TRIAL_NUMBER, None)),
                status=status,
                epochs=reached,
                params=space.decode(config),
                metric=metrics.get(spec.metric.name),
                error=error_line(str(result.error)) if result.error else "",
            )
        )
    outcome.trials.sort(key=lambda t: t.name)
    return outcome
