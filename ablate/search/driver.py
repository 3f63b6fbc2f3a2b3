"""`ablate search`: the study from start to summary (MLflow parent run, Ray, Parquet, console).

Running the same file again resumes or extends the study (see `ablate.search.resume`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ablate import __version__, results, tracking
from ablate.cluster import nodes
from ablate.errors import ConfigError, DiskFull
from ablate.search import answer, stopping, tuning
from ablate.search.delivery import settle_tracking, spool_dir
from ablate.search.outcome import StudyOutcome
from ablate.search.ownership import StudyLock
from ablate.search.resume import (
    Launch,
    StudyState,
    decide,
    extension,
    load_state,
    lost_configs,
)
from ablate.spec import StudySpec, describe_plan, objectives_text

log = logging.getLogger("ablate")  # -q: warnings and the summary only; -v: every detail


def run_search(
    spec: StudySpec,
    results_dir: Path,
    tracking_uri: str | None,
    address: str | None,
    system_metrics: bool = False,
    storage: str | None = None,
) -> int:
    uri = tracking_uri or tracking.default_tracking_uri()
    where = "--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI / default"
    store_ready = check_store(uri, where)
    plan = describe_plan(spec)
    log.info("%s\n", plan)
    study_dir = results.study_location(storage or results_dir, spec.name)
    check_disk(study_dir)
    with StudyLock(study_dir, spec.name), stopping.on_sigterm():
        try:
            code = _run_owned(
                spec, study_dir, uri, plan, address, storage, system_metrics, store_ready
            )
        except KeyboardInterrupt:  # before the trials started: nothing to stop
            tuning.disconnect()
            print(f"ablate: {stopping.how()}; run the same command again to resume.")
            code = 130
    if code == 130 and stopping.reason():  # the study stopped itself: a failure, resumable
        return 1
    if code == 130 and stopping.terminated():
        return stopping.EXIT_CODE
    return code


def check_disk(study_dir: results.Location) -> None:
    """Refuse to start (nothing written) where the disk is already below the reserve."""
    low = results.low_space(study_dir)
    if low:
        raise DiskFull(study_dir, f"{low}; free space and run the same command again")


def check_store(uri: str, where: str) -> Callable[[], None]:
    """Refuse a tracking store that does not answer, before anything is launched. A new SQLite
    store takes seconds to create (MLflow's schema migrations): here only its folder is
    checked, and the store is created in the background while Ray starts; the call returned
    waits for it (and raises if it failed)."""

    def refuse(problem: str) -> None:
        raise ConfigError(f"MLflow tracking store {uri} ({where}) does not answer: {problem}")

    path = tracking.local_store_path(uri) if uri.startswith("sqlite:///") else None
    if path is None or path.exists():
        problem = tracking.check_reachable(uri)
        if problem:
            refuse(problem)
        return lambda: None
    if not os.access(path.parent, os.W_OK):
        refuse(f"cannot create {path}: its folder does not exist or is not writable")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ablate-store")
    created = pool.submit(tracking.check_reachable, uri)
    pool.shutdown(wait=False)

    def ready() -> None:
        problem = created.result()
        if problem:
            refuse(problem)

    return ready


def _run_owned(
    spec: StudySpec,
    study_dir: results.Location,
    uri: str,
    plan: str,
    address: str | None,
    storage: str | None,
    system_metrics: bool,
    store_ready: Callable[[], None] = lambda: None,
) -> int:
    """The study, once this launch owns it: connect, decide, run, record, summarise."""
    started = time.monotonic()
    tuning.connect(address)
    stopping.take_sigterm()  # after Ray, whose init installs its own SIGTERM handlers
    try:
        store_ready()  # created while Ray started
    except ConfigError:
        tuning.disconnect()
        raise
    nodes.check_resources(spec)  # before anything is logged
    check_cluster(storage, uri)
    tuning.reenter_working_dir()  # the checks ran tasks on every node (see reenter_working_dir)
    log.debug("ablate: MLflow at %s, results in %s", uri, study_dir)
    state = load_state(study_dir)
    mode = decide(spec, state, uri, study_dir, tuning.can_restore)
    lost = (
        [] if mode == "resume" else lost_configs(spec, study_dir, tuning.trained_configs(study_dir))
    )
    if lost:  # a part or the table was set aside: "done" is not done
        mode = "extend"
        log.warning(
            f"ablate: {len(lost)} configurations of {spec.name!r} have no rows left in the "
            "results table (a file was set aside as .corrupt); training them again"
        )
    log.debug("ablate: study.json %s: %s", "found" if state else "absent", mode)
    if mode == "done":
        tuning.disconnect()
        print(f"ablate: study {spec.name!r} already finished with this file; nothing to run.")
        print("ablate: add trials or seeds to the file to extend it, or change `name`.")
        return 0
    results.makedirs(study_dir)
    tracker, launch, state = _prepare(spec, mode, state, uri, study_dir, plan, lost)
    if launch.num_trials is not None and launch.num_trials <= 0:
        _close(state, study_dir, tracker, "finished", "completed")
        print(f"ablate: all {spec.num_trials} configurations of {spec.name!r} already finished.")
        return 0
    try:
        outcome = tuning.run_study(spec, tracker, study_dir, launch, system_metrics)
    except KeyboardInterrupt:
        _close(state, study_dir, tracker, "interrupted", "killed")
        print(f"ablate: {stopping.how()}; run the same command again to resume ({study_dir})")
        return 130
    statuses = {t.trial_id: t.status for t in outcome.trials}
    trial_nodes = {t.trial_id: t.node for t in outcome.trials if t.node}
    table_path = results.compact(
        study_dir, statuses, trial_nodes if nodes.node_count() > 1 else None
    )
    settle_tracking(tracker, statuses, study_dir)
    found = answer.find(spec, outcome)
    record_answer(tracker, found)
    unfinished = any(t.status == "unfinished" for t in outcome.trials)
    counts = {s: outcome.count(s) for s in ("completed", "pruned", "failed")}
    final = "killed" if unfinished else ("completed" if counts["completed"] else "failed")
    # Ray's held-back log lines come out as it lets go of Ray, before the summary
    _close(state, study_dir, tracker, "interrupted" if unfinished else "finished", final, counts)
    print(summary(spec, outcome, found, table_path, tracker, time.monotonic() - started))
    if unfinished:
        print(f"ablate: {stopping.how()}; run the same command again to resume it.")
        return 130
    return 0 if counts["completed"] or counts["pruned"] else 1


def _close(
    state: StudyState,
    study_dir: results.Location,
    tracker: tracking.Tracker,
    status: str,
    run_status: str,
    counts: dict[str, int] | None = None,
) -> None:
    """How the study ended, in study.json (`status`) and in its MLflow parent run (`run_status`,
    with the trial counts); then let go of Ray."""
    state.status = status
    state.save(study_dir)
    tracker.finish_study(counts or {}, status=run_status)
    tuning.disconnect()


def check_cluster(storage: str | None, uri: str) -> None:
    """On a cluster of several machines, trials write to storage and MLflow from every node:
    refuse a local results folder or a file-based tracking store (each machine would get its
    own), then check from every node that the storage is shared and MLflow answers."""
    machines = nodes.machines()
    if len(machines) > 1:
        problems = []
        if storage is None:
            problems.append(
                "--storage is needed: trials on other machines would write their checkpoints "
                "and result parts to their own disks, where the driver never sees them; pass "
                "a folder every node mounts at the same path (NFS) or an object store URI "
                "(s3://bucket/prefix, gs://...)"
            )
        if tracking.is_local_store(uri):
            problems.append(
                f"the MLflow store {uri} is a file on this machine; every node logs to it, so "
                "use a tracking server they all reach (--tracking-uri http://HOST:5000, see "
                "cluster/mlflow/)"
            )
        if problems:
            where = ", ".join(sorted(machines))
            raise ConfigError(
                f"this Ray cluster has nodes on {len(machines)} machines ({where}):\n"
                + "\n".join(f"  {p}" for p in problems)
            )
    if storage is not None or nodes.node_count() > 1:
        problems = nodes.preflight(storage, uri)
        if problems:
            raise ConfigError(
                "pre-flight check of the cluster failed; nothing was started:\n"
                + "\n".join(f"  {p}" for p in problems)
            )


def _prepare(
    spec: StudySpec,
    mode: str,
    state: StudyState | None,
    uri: str,
    study_dir: results.Location,
    plan: str,
    lost: list[dict] | None = None,
) -> tuple[tracking.Tracker, Launch, StudyState]:
    """The MLflow parent run and the Ray launch for a new, resumed or extended study."""
    if mode == "resume" and state is not None:
        log.info(
            f"ablate: resuming the interrupted study {spec.name!r} (parent run "
            f"{state.parent_run_id})"
        )
        spool = spool_dir(study_dir)
        tracker = tracking.Tracker(uri, state.experiment_id, state.parent_run_id, spool)
        tracker.reopen(state.parent_run_id)
        tracker.set_tags(state.parent_run_id, {"ablate.resumed": str(state.invocation)})
        state.status = "running"
        state.save(study_dir)
        ray_dir = state.ray_dir if results.is_uri(state.ray_dir) else Path(state.ray_dir)
        return tracker, Launch(ray_dir, restore=True), state
    invocation = state.invocation + 1 if state else 1
    if mode == "extend":
        launch = extension(spec, study_dir, invocation, lost)
        reused = len(launch.prior.configs) if launch.prior else 0
        log.info(
            f"ablate: extending study {spec.name!r}: {reused} finished configurations reused;"
            " finished (configuration, seed) cells are not trained again"
        )
    else:
        launch = Launch(results.join(study_dir, "ray", spec.name))
    tracker = tracking.Tracker(uri, spool_dir=spool_dir(study_dir)).start_study(
        spec.name, spec.description, _plan_params(spec), _study_tags(spec)
    )
    tracker.log_study_file(Path(spec.path).name, spec.text)  # the driver's cwd may be gone
    tracker.log_text(tracker.parent_run_id, plan, "plan.txt")
    state = StudyState(
        spec_sha256=spec.sha256,
        tracking_uri=uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        ray_dir=str(launch.ray_dir),
        status="running",
        invocation=invocation,
    )
    state.save(study_dir)
    return tracker, launch, state


def _plan_params(spec: StudySpec) -> dict[str, str]:
    return {
        "study.file": str(spec.path),
        "study.method": spec.method,
        "study.metric": objectives_text(spec),
        "study.seeds": str(spec.seeds),
        **({"study.datasets": str(spec.datasets)} if spec.datasets else {}),
        "study.trials": str(spec.num_trials),
        "study.search": spec.search.algorithm,
        "study.max_concurrent": str(spec.search.max_concurrent),
        "study.scheduler": spec.scheduler.type,
        "study.resources": f"cpu={spec.resources.cpu:g} gpu={spec.resources.gpu:g}",
        "study.base_overrides": " ".join(spec.base_overrides()),
        "study.parameters": ", ".join(p.key for p in spec.search_parameters()),
    }


def _study_tags(spec: StudySpec) -> dict[str, str]:
    return {"ablate.spec_sha256": spec.sha256, "ablate.version": __version__}


def record_answer(tracker: tracking.Tracker, found: answer.Answer) -> None:
    """The study's answer on its parent run: the best trial's metrics and configuration, or
    the Pareto front (its members' objectives, and pareto_front.csv)."""
    run = tracker.parent_run_id
    if not found.members:
        return
    tracker.set_tags(run, answer.run_tags(found))
    tracker.log_metrics(run, answer.run_metrics(found), step=0)
    if found.is_front:
        tracker.log_text(run, answer.front_table(found), answer.FRONT_FILE)


def summary(
    spec: StudySpec,
    outcome: StudyOutcome,
    found: answer.Answer,
    table_path: results.Location,
    tracker: tracking.Tracker,
    seconds: float,
) -> str:
    c = {s: outcome.count(s) for s in ("completed", "pruned", "failed")}
    pruned_at = sorted(t.epochs for t in outcome.trials if t.status == "pruned")
    lines = [
        "",
        f"Study {spec.name!r} finished in {seconds / 60:.1f} min: {len(outcome.trials)} trials, "
        f"{c['completed']} completed, {c['pruned']} pruned"
        + (f" (at epochs {', '.join(map(str, pruned_at))})" if pruned_at else "")
        + f", {c['failed']} failed.",
    ]
    if outcome.stopped_early:
        lines.append(
            f"Stopped early: the first {c['failed']} trials all failed, so the rest would too. "
            "Fix the error below and run again."
        )
    lines += answer.summary_lines(found, spec.seeds, spec.datasets)
    for t in outcome.trials:
        if t.status == "failed":
            lines.append(f"Failed: {t.name}: {t.error}")
    rows = results.read(table_path).num_rows if results.exists(table_path) else 0
    lines += [
        f"Results table: {table_path} ({rows} rows)",
        f"MLflow: experiment {spec.name!r} (id {tracker.experiment_id}), parent run "
        f"{tracker.parent_run_id}",
        f"    review with: ablate ui {spec.name}{_uri_flag(tracker.uri)}",
    ]
    return "\n".join(lines)


def _uri_flag(uri: str) -> str:
    return "" if uri == tracking.default_tracking_uri() else f" --tracking-uri {uri}"
