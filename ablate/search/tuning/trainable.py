"""What runs in a trial's Ray worker, and what each trial asks Ray for: the trainable adapter
around the Ray-free trial body (`trial_body.run`), with its state saved every epoch
(`trial_state`: Tune's checkpoint only counts the epochs it was told of), and the per-trial
resources (`resources.gpu: auto`: a probe measures each configuration's GPU share)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablate import config, results
from ablate.errors import DiskFull, is_disk_full
from ablate.search import cells, failures, space, trial_body, trial_state
from ablate.search.outcome import error_line
from ablate.search.tuning.ray_api import node_ip, ray, tune
from ablate.spec import StudySpec
from ablate.tracking import NODE_IP_TAG, NODE_TAG, Tracker

FIDELITY = "training_iteration"  # one report per epoch, so iterations are epochs
TRIAL_NUMBER = "trial"  # in the configs of studies started before trials were numbered apart
STATE_FILE = "state.pt"  # the whole state, in the Tune checkpoints of an older ablate
TOLD_FILE = "epoch"  # in a Tune checkpoint: the epochs Tune has been told of
NODE = "node_id"  # in every result: the Ray node the trial runs on (the driver records it)
log = logging.getLogger("ablate")
# Tune logs every checkpoint at INFO; ablate's Tune checkpoint is a count of epochs, a line per
# epoch of every trial about it tells a user nothing
TUNE_CHECKPOINT_LOG = "ray.train._internal.storage"


def trial_resources(spec: StudySpec) -> dict[str, float] | Callable[[dict], Any]:
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


def make_trainable(
    spec: StudySpec, tracker: Tracker, study_dir: results.Location, system_metrics: bool
) -> Callable:
    threads = max(1, int(spec.resources.cpu))
    folder = study_dir if results.is_uri(study_dir) else Path(study_dir).resolve()

    def trainable(params: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(threads)
        logging.getLogger(TUNE_CHECKPOINT_LOG).setLevel(logging.WARNING)
        params = dict(params)
        params.pop(TRIAL_NUMBER, None)  # a study started by an older ablate numbered it here
        name = tune.get_context().get_trial_name()
        trial_id = tune.get_context().get_trial_id()
        where = {NODE_TAG: ray.get_runtime_context().get_node_id(), NODE_IP_TAG: node_ip()}
        ctx = trial_body.TrialContext(trial_id, name, folder, tracker, system_metrics, where)  # type: ignore[arg-type]
        key = cells.state_key(spec, params)
        saved = trial_state.load(folder, key, name)
        told, legacy = _tune_checkpoint(name)
        if saved.state is None and legacy is not None:
            saved = trial_state.Saved(legacy, [])
        sent: list[dict[str, float]] = []  # the epochs this call tells Tune of

        def tell(metrics: dict[str, float]) -> None:
            _tell(metrics)
            sent.append(metrics)

        for metrics in saved.history:  # Tune's snapshot is older than the state: catch it up
            if metrics["epoch"] > told:
                tell(metrics)
        told = max(told, saved.epoch)

        def report(metrics: dict[str, float], state: dict[str, Any]) -> None:
            saved.state, saved.history = state, [*saved.history, metrics]
            trial_body.when_space(lambda: trial_state.save(folder, key, saved), name)
            if metrics["epoch"] > told:  # after a state set aside, Tune has the earlier epochs
                tell(metrics)

        try:
            trial_body.run(spec, params, report, ctx, resume=saved.state)
        except Exception:
            own = failures.record(folder, trial_id, error_line(traceback.format_exc()))
            if own <= spec.retries:
                raise  # Tune restarts the trial from its last state
            # past its retries the trial ends here, failed (its runs say so, and
            # failures.gave_up tells the driver): raising would let Tune retry it as if its
            # node had died
            return
        if not sent and saved.history:
            # Tune had its every epoch but not its end (a kill -9 in between): the last epoch
            # again, so Tune ends the trial on its metrics, not on an empty result
            _tell(saved.history[-1])

    return trainable


def epoch_of(result: dict[str, Any]) -> int:
    """The last epoch a trial's result tells of: its own count, not Tune's iterations, which
    count reports (an epoch told twice, above, counts twice)."""
    return int(result.get("epoch") or result.get(FIDELITY) or 0)


def _tell(metrics: dict[str, float]) -> None:
    """tune.report of an epoch, with a checkpoint that says how many epochs Tune now has, so
    a paused or restarted trial (HyperBand and median stopping pause; failures retry) continues
    where it stopped and Tune's epoch count stays the trial's."""
    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, TOLD_FILE).write_text(str(int(metrics["epoch"])))
        checkpoint = tune.Checkpoint.from_directory(folder)
        try:
            tune.report({**metrics, NODE: node}, checkpoint=checkpoint)
        except OSError as err:
            if not is_disk_full(err):
                raise
            _wait_to_be_stopped(err)


def _wait_to_be_stopped(err: OSError, patience: float = 600) -> None:
    """A checkpoint that found the disk full cannot be reported again (Tune has counted the
    epoch): wait for the driver to stop the study below its disk reserve, so this trial
    resumes from its last checkpoint; if it does not within `patience`, the trial fails."""
    where = tune.get_context().get_trial_dir()
    print(f"ablate: disk full: {where} (checkpoint: {error_line(str(err))}); the study stops")
    time.sleep(patience)
    raise DiskFull(where, "the checkpoint could not be written") from err


def _tune_checkpoint(trial_name: str) -> tuple[int, dict[str, Any] | None]:
    """The epochs Tune has been told of (0 for a new trial), and the whole state when the
    checkpoint is one an older ablate wrote (None otherwise). Such a state that cannot be read
    (truncated, torn) is set aside: the trial trains again from epoch 1, telling Tune only of
    the epochs after those it has."""
    import torch

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0, None
    with checkpoint.as_directory() as folder:
        with contextlib.suppress(OSError, ValueError):
            return int(Path(folder, TOLD_FILE).read_text()), None
        try:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
            return int(state["epoch"]), state
        except Exception as err:
            problem = error_line(f"{type(err).__name__}: {err}")
    where = results.join(checkpoint.path, STATE_FILE)
    if not results.is_uri(checkpoint.path) and Path(where).exists():
        where = results.set_aside(where)
    print(
        f"ablate: {trial_name}: its checkpoint cannot be read ({problem}); set aside as "
        f"{where}. The trial trains again from epoch 1 (same MLflow runs, rows rewritten)."
    )
    return _checkpoint_index(checkpoint.path) + 1, None


def _checkpoint_index(path: str) -> int:
    """Tune's index of a checkpoint folder (checkpoint_000007: 7): one per reported epoch."""
    try:
        return int(str(path).rstrip("/").rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return -1
