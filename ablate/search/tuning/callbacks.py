"""Ray Tune callbacks of the driver: final MLflow statuses and the node of every trial (a
stopped trial's worker may never run another line), the all-fail stop, the notice that says
why trials wait, and the stop before the study's disk is full."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ablate import results
from ablate.cluster import nodes
from ablate.search import failures, stopping
from ablate.search.outcome import error_line
from ablate.search.tuning.ray_api import Stopper, tune
from ablate.search.tuning.trainable import NODE, epoch_of
from ablate.tracking import Outbox, Tracker

log = logging.getLogger("ablate")


class StatusCallback(tune.Callback, Stopper):
    """Writes pruned/failed statuses to MLflow from the driver, says how each trial ended and
    which is the best so far (as Optuna does, by ablate's names and rule: the completed trials'
    seed means), says when a trial is restarted (its own failure, or a lost worker or node), and
    stops a study whose first `fail_limit` trials all failed instead of burning the budget on a
    broken setup."""

    # class defaults: a callback pickled with a study by an older ablate is restored without them
    study_dir: results.Location | None = None
    retries = 0
    objective: tuple[str, str] | None = None

    def __init__(
        self,
        tracker: Tracker,
        epochs: int,
        fail_limit: int,
        study_dir: results.Location | None = None,
        retries: int = 0,
        objective: tuple[str, str] | None = None,
    ) -> None:
        """`objective`: the one metric and its mode ("max" or "min"); None for several."""
        self.objective = objective
        self.tracker = tracker
        self.epochs = epochs
        self.fail_limit = fail_limit
        self.study_dir = study_dir
        self.retries = retries
        self.statuses: dict[str, str] = {}
        self.nodes: dict[str, str] = {}  # trial id -> the Ray node it last reported from
        self.reported = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        # an epoch the trial reported (every report names its node), not the final result Tune
        # adds when a trial that gave up after its retries returns without one
        self.reported = self.reported or NODE in result
        return False

    def stop_all(self) -> bool:
        failed = sum(s == "failed" for s in self.statuses.values())
        return not self.reported and failed >= self.fail_limit

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        # the node, for the table's `node` column (the trial's runs are tagged by the trial)
        if node := result.get(NODE):
            self.nodes[trial.trial_id] = node

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = epoch_of(trial.last_result)
        error = self._gave_up(trial.trial_id)
        status = "failed" if error else "completed" if epoch >= self.epochs else "pruned"
        self.statuses[trial.trial_id] = status
        if status == "pruned":
            self._finish(trial.trial_id, "pruned", {"ablate.stopped_epoch": str(epoch)})
        elif error:  # the trial marked its runs failed itself; this closes what it could not
            self._finish(trial.trial_id, "failed", {"ablate.error": error[:4000]})
        self._announce(trial, status, epoch, trials)

    def _announce(self, trial: Any, status: str, epoch: int, trials: list) -> None:
        line = f"ablate: {trial} {status}" + (f" after epoch {epoch}" if status == "pruned" else "")
        if self.objective is None:
            log.info(line)
            return
        name = self.objective[0]
        value = (trial.last_result or {}).get(name)
        if status != "failed" and isinstance(value, int | float):
            line += f" with {name} = {value:.2f}"
        best = self._best(trials)
        log.info(line + (f"; best is {best} with {best.last_result[name]:.2f}" if best else ""))

    def _best(self, trials: list) -> Any:
        """The best completed trial so far (restored ones too), the first by name on a tie."""
        name, mode = self.objective or ("", "max")
        sign = 1.0 if mode == "max" else -1.0
        done = [
            t
            for t in sorted(trials, key=str)
            if self.statuses.get(t.trial_id, "completed") == "completed"
            and epoch_of(t.last_result or {}) >= self.epochs
            and isinstance((t.last_result or {}).get(name), int | float)
        ]
        return max(done, key=lambda t: sign * t.last_result[name], default=None)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tune restarts the trial from its last checkpoint: after a failure of its own within
        `retries`, or after its worker or node was lost (which costs no retry)."""
        own = self._own_failures(trial.trial_id)
        counted = self.__dict__.setdefault("counted", {})  # own failures already announced
        epoch = epoch_of(trial.last_result or {})
        where = f"after epoch {epoch}" if epoch else "from the start"
        if own > counted.get(trial.trial_id, 0):
            counted[trial.trial_id] = own
            log.warning(
                f"ablate: {trial} failed ({_error_text(trial)}); retry {own} of "
                f"{self.retries}, {where}"
            )
        else:
            log.warning(
                f"ablate: {trial} lost its Ray worker ({_error_text(trial)}); it resumes "
                f"{where} on a node that is still up (this costs no retry)"
            )

    def _own_failures(self, trial_id: str) -> int:
        if self.study_dir is None:
            return 0
        try:
            return len(failures.errors(self.study_dir, trial_id))
        except OSError as err:
            log.warning(f"ablate: could not read the failures of trial {trial_id}: {err}")
            return 0

    def _gave_up(self, trial_id: str) -> str | None:
        if self.study_dir is None:
            return None
        try:
            return failures.gave_up(self.study_dir, trial_id, self.retries)
        except OSError as err:
            log.warning(f"ablate: could not read the failures of trial {trial_id}: {err}")
            return None

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.statuses[trial.trial_id] = "failed"
        self._finish(trial.trial_id, "failed", {"ablate.error": _error_text(trial)[:4000]})
        self._announce(trial, "failed", 0, trials)

    def _finish(self, trial_id: str, status: str, tags: dict[str, str]) -> None:
        """Close the trial's runs still RUNNING, on the tracking thread: a search and a few
        writes per ended trial, which Tune's event loop does not wait for."""
        self.__dict__.setdefault("outbox", Outbox()).send(self._finish_now, trial_id, status, tags)

    def settle(self) -> None:
        """Wait for the runs closed so far (before the driver closes what is left RUNNING)."""
        if "outbox" in self.__dict__:
            self.__dict__["outbox"].wait()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outbox"}  # calls in flight

    def _finish_now(self, trial_id: str, status: str, tags: dict[str, str]) -> None:
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
            free = nodes.free_per_node()
        except Exception as err:
            log.warning(f"ablate: {len(pending)} trials pending for {waited:.0f} s ({err})")
            return
        log.warning(nodes.pending_message(self.wanted, len(pending), waited, free))


class DiskWatch(tune.Callback):
    """Stops the study as Ctrl-C does (trials checkpointed at their last epoch, resumable) when
    the disk of its folder falls below the reserve (`results.low_space`), checked every `every`
    seconds: before a write fails, and a trial that found the disk full waits for this."""

    def __init__(self, folder: results.Location, every: float = 1.0) -> None:
        self.folder, self.every, self.last = folder, every, 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        low = results.low_space(self.folder)
        if low:
            stopping.stop(f"disk full: {self.folder} ({low})")


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return error_line(Path(path).read_text(errors="replace"))
    return "unknown error"
