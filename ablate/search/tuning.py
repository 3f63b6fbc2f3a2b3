"""Ray Tune lives here and only here: run a validated study and collect its outcome.

The searcher is always Ray's `OptunaSearch` with the sampler from `space.make_sampler` (tpe,
random or grid), behind a `ConcurrencyLimiter`; the scheduler is built from its entry in
`spec.schedulers`, with the epoch (one `report` per epoch) as the fidelity. Final MLflow statuses
are written from the driver (`_StatusCallback`), because a stopped trial's worker may never run
another line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import ray.tune.schedulers
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from ablate import cluster_nodes, config, results
from ablate.errors import ConfigError
from ablate.search import space, trial_body
from ablate.search.outcome import StudyOutcome, TrialOutcome, error_line, status_of, trial_name
from ablate.search.resume import Launch
from ablate.spec import Scheduler, StudySpec, schedulers
from ablate.tracking import Tracker

FIDELITY = "training_iteration"  # one report per epoch, so iterations are epochs
TRIAL_NUMBER = "trial"  # in the configs of studies started before trials were numbered apart
log = logging.getLogger("ablate")
_NUMBERS: dict[str, int] = {}  # Ray trial id -> Optuna's trial number 0, 1, 2, ... (names t000)
_DRIVER: dict[str, str] = {}  # "cwd": the driver's working directory, while it holds Ray


def make_scheduler(s: Scheduler, epochs: int) -> TrialScheduler:
    """The Ray scheduler of the study's `scheduler.type`, from its entry in `spec.schedulers`."""
    entry = schedulers.SCHEDULERS[s.type]
    kwargs = entry.kwargs(s, epochs) | ({"time_attr": FIDELITY} if entry.fidelity else {})
    return getattr(ray.tune.schedulers, entry.ray_class)(**kwargs)


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray bound to 127.0.0.1. A Ray this call
    connects to, `disconnect` lets go of (a Ray the caller already holds is left alone)."""
    if address and address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address {address} is a Ray dashboard (Jobs API) address: submit the study "
            f"there with `ablate submit FILE --address {address}`, or give `ablate search` the "
            "cluster's GCS address (HEAD:6379) to run the driver here"
        )
    if ray.is_initialized():
        return
    quiet = not log.isEnabledFor(logging.INFO)  # -q: no worker output, only Ray's errors
    options = {"log_to_driver": not quiet, "logging_level": _ray_log_level()}
    # Ray 2.60 turns token authentication on by default (token in ~/.ray/auth_token, generated
    # on first start); ablate leaves it on and never sets RAY_AUTH_MODE itself.
    if address:
        _DRIVER["cwd"] = os.getcwd()
        try:
            ray.init(address=address, **options)
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
        reenter_working_dir()
    else:
        _DRIVER["cwd"] = os.getcwd()
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **options)


def reenter_working_dir() -> None:
    """Step back into the driver's working directory if it was deleted under it. A job's
    working_dir is unpacked once per node, and a second node sharing this disk (nodes started on
    one machine share /tmp/ray) deletes and unpacks it again when its first task arrives: the
    driver's cwd then dangles, though the same path holds the same files again."""
    cwd = _DRIVER.get("cwd")
    try:
        os.getcwd()
    except FileNotFoundError:
        if cwd:
            os.chdir(cwd)


def disconnect() -> None:
    """Let go of the Ray that `connect` connected to: Ray's log threads stop and the log lines
    its deduplicator held back are printed now, before the study's summary, not after it."""
    if _DRIVER.pop("cwd", None) is not None and ray.is_initialized():
        ray.shutdown()
    reenter_working_dir()


def _ray_log_level() -> int:
    """Ray's own driver-side log lines: warnings by default, everything with -v."""
    if log.isEnabledFor(logging.DEBUG):
        return logging.INFO
    return logging.WARNING if log.isEnabledFor(logging.INFO) else logging.ERROR


def tune_verbosity() -> int:
    """Tune's console output: 0 with -q, its trial tables by default, every result with -v."""
    if log.isEnabledFor(logging.DEBUG):
        return 2
    return 1 if log.isEnabledFor(logging.INFO) else 0


def can_restore(ray_dir: Path | str) -> bool:
    """Whether a Ray experiment folder (a path or a URI) holds a study Tuner.restore continues."""
    if not results.is_uri(ray_dir) and not Path(ray_dir).exists():
        return False
    try:
        return tune.Tuner.can_restore(str(ray_dir))
    except Exception:  # an unreachable or foreign storage location: start afresh
        return False


def run_study(
    spec: StudySpec,
    tracker: Tracker,
    study_dir: results.Location,
    launch: Launch,
    system_metrics: bool = False,
) -> StudyOutcome:
    epochs = spec.max_epochs()
    if not results.is_uri(str(launch.ray_dir)):
        # every epoch checkpoints (num_to_keep=1 forces a state snapshot): on local disk that
        # is a cheap copy, and Tune's "snapshotting triggered multiple times" warning is noise
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Optuna set its own level when Ray imported it; it follows ablate's -q / -v from here
    logging.getLogger("optuna").setLevel(logging.INFO if tune_verbosity() > 1 else logging.WARNING)
    if tune_verbosity() == 0:  # Tune's new console output prints its header even then
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    guard = _StatusCallback(tracker, epochs, fail_limit=min(3, spec.num_trials))
    pending = PendingNotice(cluster_nodes.wanted(spec))
    trainable = tune.with_resources(
        _make_trainable(spec, tracker, study_dir, system_metrics), _trial_resources(spec)
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
                verbose=tune_verbosity(),
            ),
        )
    grid = tuner.fit()
    reenter_working_dir()  # a node that joined during the study may have unpacked it anew
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
        scheduler=make_scheduler(spec.scheduler, epochs),
        num_samples=spec.num_trials if launch.num_trials is None else launch.num_trials,
        trial_name_creator=_name_of,
        trial_dirname_creator=lambda t: f"{_name_of(t)}_{t.trial_id}",
        # one machine: a worker process runs trial after trial, and its imports, backbone,
        # decoded dataset and frozen features stay loaded (trial_body.shared_inputs); on a
        # multi-node cluster each trial is placed afresh so the trials spread over the nodes
        reuse_actors=cluster_nodes.node_count() == 1,
    )


def _trial_resources(spec: StudySpec) -> dict[str, float] | Callable[[dict], Any]:
    """What one trial asks Ray for. With `resources.gpu: auto` the GPU share is measured per
    configuration by a short probe on a GPU (trainers.probe), so Ray packs as many trials on a
    GPU as fit in its memory; configurations that differ only in optimiser settings share one
    measurement."""
    if not spec.resources.gpu_auto:
        return {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    from trainers import probe

    measure = ray.remote(num_cpus=0, num_gpus=probe.STEP)(_measured_share)
    shares: dict[str, float] = {}

    def resources(params: dict[str, Any]) -> tune.PlacementGroupFactory:
        values = space.decode({k: v for k, v in params.items() if k != TRIAL_NUMBER})
        cfg = config.compose(spec.trial_overrides(values))
        key = probe.memory_key(cfg)
        if key not in shares:
            shares[key] = _probe_or_whole(measure, cfg, len(spec.seeds), spec.resources.gpu)
        return tune.PlacementGroupFactory([{"CPU": spec.resources.cpu, "GPU": shares[key]}])

    return resources


def _probe_or_whole(
    measure: Any, cfg: Any, seeds: int, whole: float, timeout: float = 600
) -> float:
    """The probe's share; a probe that cannot run (the GPUs are full, it fails) must not block
    or crash the study: the trial then asks for the file's upper bound, one GPU."""
    ref = measure.remote(cfg, seeds)
    try:
        return ray.get(ref, timeout=timeout)
    except Exception as err:
        ray.cancel(ref, force=True)
        log.warning(
            f"ablate: the GPU memory probe did not finish ({error_line(str(err))}); "
            f"the trial asks for {whole:g} GPU"
        )
        return whole


def _measured_share(cfg: Any, seeds: int) -> float:
    from trainers import probe

    peak, total = probe.peak_gpu_memory(cfg, seeds)
    share = probe.gpu_share(peak, total)  # printed in a Ray worker: Ray forwards it
    print(f"ablate: a trial of this configuration peaks at {peak / 2**30:.2f} GiB of "
          f"{total / 2**30:.0f} GiB; it asks for {share:g} GPU")  # fmt: skip
    return share


def _make_trainable(
    spec: StudySpec, tracker: Tracker, study_dir: results.Location, system_metrics: bool
) -> Callable:
    threads = max(1, int(spec.resources.cpu))
    folder = study_dir if results.is_uri(study_dir) else Path(study_dir).resolve()

    def trainable(params: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(threads)
        params = dict(params)
        params.pop(TRIAL_NUMBER, None)  # a study started by an older ablate numbered it here
        name = tune.get_context().get_trial_name()
        trial_id = tune.get_context().get_trial_id()
        ctx = trial_body.TrialContext(trial_id, name, folder, tracker, system_metrics)  # type: ignore[arg-type]
        trial_body.run(spec, params, _report_with_checkpoint, ctx, resume=_restore())

    return trainable


STATE_FILE = "state.pt"
NODE = "node_id"  # in every result: the Ray node the trial runs on (the driver records it)


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


class _NumberedOptunaSearch(OptunaSearch):
    """OptunaSearch that notes Optuna's trial number of each trial, to name trials by it. The
    number stays out of the config, so Tune's tables show only the searched parameters. The
    Optuna storage is ours, so the number is read through Optuna's public API; it is pickled with
    the searcher's state, so a restored study numbers on."""

    def __init__(self, **kwargs: Any) -> None:
        self.optuna_storage = space.new_storage()
        super().__init__(storage=self.optuna_storage, study_name=space.STUDY_NAME, **kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id not in _NUMBERS:
            _NUMBERS[trial_id] = space.newest_trial_number(self.optuna_storage)
        return config


def _name_of(trial: Any) -> str:
    """`t007` for Optuna's trial 7 (Tune names a trial right after the searcher suggests it)."""
    number = _NUMBERS.get(trial.trial_id, trial.config.get(TRIAL_NUMBER))
    return trial_name(number)


class _StatusCallback(tune.Callback, Stopper):
    """Writes pruned/failed statuses to MLflow from the driver, and stops a study whose first
    `fail_limit` trials all failed instead of burning the budget on a broken setup."""

    def __init__(self, tracker: Tracker, epochs: int, fail_limit: int) -> None:
        self.tracker = tracker
        self.epochs = epochs
        self.fail_limit = fail_limit
        self.statuses: dict[str, str] = {}
        self.nodes: dict[str, str] = {}  # trial id -> the Ray node it last reported from
        self.reported = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.reported = True
        return False

    def stop_all(self) -> bool:
        failed = sum(s == "failed" for s in self.statuses.values())
        return not self.reported and failed >= self.fail_limit

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        node = result.get(NODE)
        if node and self.nodes.get(trial.trial_id) != node:  # its first result, or it moved
            self.nodes[trial.trial_id] = node
            tags = {"ablate.node": node, "ablate.node_ip": str(result.get("node_ip", ""))}
            try:
                for run in self.tracker.runs_of_trial(trial.trial_id):
                    self.tracker.set_tags(run.info.run_id, tags)
            except Exception as err:  # tracking trouble must not stop the study
                log.warning(f"ablate: could not tag trial {trial.trial_id} with its node: {err}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = int(trial.last_result.get(FIDELITY, 0))
        status = "completed" if epoch >= self.epochs else "pruned"
        self.statuses[trial.trial_id] = status
        if status == "pruned":
            self._finish(trial.trial_id, "pruned", {"ablate.stopped_epoch": str(epoch)})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.statuses[trial.trial_id] = "failed"
        self._finish(trial.trial_id, "failed", {"ablate.error": _error_text(trial)[:4000]})

    def _finish(self, trial_id: str, status: str, tags: dict[str, str]) -> None:
        try:
            for run in self.tracker.runs_of_trial(trial_id):
                if run.info.status == "RUNNING":
                    self.tracker.finish_run(run.info.run_id, status, tags)
        except Exception as err:  # tracking trouble must not stop the study
            log.warning(f"ablate: could not record {status} for trial {trial_id} in MLflow: {err}")


class PendingNotice(tune.Callback):
    """Says why trials wait: when trials have been PENDING for `after` seconds while none of
    the study runs (nothing of ours will free resources), it prints, every `every` seconds,
    what one trial needs and what each node has free, naming the resource that is short."""

    def __init__(self, wanted: dict[str, float], after: float | None = None, every: float = 120):
        self.wanted = wanted
        self.after = (
            float(os.environ.get("ABLATE_PENDING_NOTICE_S", 60)) if after is None else after
        )
        self.every = every
        self.since: dict[str, float] = {}
        self.last = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        pending = [t for t in trials if t.status == "PENDING"]
        self.since = {t.trial_id: self.since.get(t.trial_id, now) for t in pending}
        running = any(t.status == "RUNNING" for t in trials)
        waited = max((now - s for s in self.since.values()), default=0.0)
        if running or waited < self.after or now - self.last < self.every:
            return
        self.last = now
        try:
            free = cluster_nodes.free_per_node()
        except Exception as err:
            log.warning(f"ablate: {len(pending)} trials pending for {waited:.0f} s ({err})")
            return
        log.warning(cluster_nodes.pending_message(self.wanted, len(pending), waited, free))


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return error_line(Path(path).read_text(errors="replace"))
    return "unknown error"


def _trial_id_from_path(path: str) -> str:
    return Path(path).name.rsplit("_", 1)[-1]  # trial_dirname_creator: t007_<trial_id>


def _outcome(grid: Any, spec: StudySpec, statuses: dict[str, str], epochs: int) -> StudyOutcome:
    outcome = StudyOutcome()
    # Tune's statuses of this invocation's trials and of those an earlier one finished
    analysis = tune.ExperimentAnalysis(grid.experiment_path, storage_filesystem=grid.filesystem)
    ray_status = {t.trial_id: t.status for t in analysis.trials}
    for result in grid:
        metrics = result.metrics or {}
        config = dict(result.config or {})
        trial_id = metrics.get("trial_id") or _trial_id_from_path(result.path)
        reached = int(metrics.get(FIDELITY, 0))
        status = statuses.get(trial_id) or status_of(
            ray_status.get(trial_id), result, reached, epochs
        )
        config.pop(TRIAL_NUMBER, None)
        outcome.trials.append(
            TrialOutcome(
                trial_id=trial_id,
                name=Path(result.path).name.rsplit("_", 1)[0],  # trial_dirname_creator: t007_id
                status=status,
                epochs=reached,
                params=space.decode(config),
                metric=metrics.get(spec.metric.name),
                error=error_line(str(result.error)) if result.error else "",
            )
        )
    outcome.trials.sort(key=lambda t: t.name)
    return outcome
