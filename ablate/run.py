"""`ablate search`: the study from start to summary (MLflow parent run, Ray, Parquet, console)."""

from __future__ import annotations

import time
from pathlib import Path

from ablate import __version__, results, study, tracking
from ablate.spec import StudySpec, describe_plan


def run_search(
    spec: StudySpec,
    results_dir: Path,
    tracking_uri: str | None,
    address: str | None,
    system_metrics: bool = False,
) -> int:
    started = time.monotonic()
    uri = tracking_uri or tracking.default_tracking_uri()
    plan = describe_plan(spec)
    print(plan, "\n", flush=True)
    study.connect(address)
    study.check_resources(spec)  # before anything is logged
    study_dir = (results_dir / spec.name).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    tracker = tracking.Tracker(uri).start_study(
        spec.name, spec.description, _plan_params(spec), _study_tags(spec)
    )
    tracker.log_study_file(spec.path)
    tracker.log_text(tracker.parent_run_id, plan, "plan.txt")
    try:
        outcome = study.run_study(spec, tracker, study_dir, address, system_metrics)
    except KeyboardInterrupt:
        tracker.finish_study({}, status="killed")
        print("ablate: interrupted; the study's runs so far are in MLflow and", study_dir)
        return 130
    statuses = {t.trial_id: t.status for t in outcome.trials}
    table_path = results.compact(study_dir, statuses)
    counts = {s: outcome.count(s) for s in ("completed", "pruned", "failed")}
    tracker.finish_study(counts, status="completed" if counts["completed"] else "failed")
    print(summary(spec, outcome, table_path, tracker, time.monotonic() - started))
    return 0 if counts["completed"] or counts["pruned"] else 1


def _plan_params(spec: StudySpec) -> dict[str, str]:
    return {
        "study.file": str(spec.path),
        "study.method": spec.method,
        "study.metric": f"{spec.metric.name} ({spec.metric.goal})",
        "study.seeds": str(spec.seeds),
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


def summary(
    spec: StudySpec,
    outcome: study.StudyOutcome,
    table_path: Path,
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
    finished = [t for t in outcome.trials if t.status == "completed" and t.metric is not None]
    if finished:
        pick = max if spec.metric.goal == "maximize" else min
        best = pick(finished, key=lambda t: t.metric)
        lines.append(
            f"Best configuration: {best.name}, {spec.metric.name} = {best.metric:.2f} "
            f"(mean over seeds {spec.seeds})"
        )
        lines += [f"    {k} = {v}" for k, v in sorted(best.params.items())]
    for t in outcome.trials:
        if t.status == "failed":
            lines.append(f"Failed: {t.name}: {t.error}")
    rows = results.read(table_path).num_rows if table_path.exists() else 0
    lines += [
        f"Results table: {table_path} ({rows} rows)",
        f"MLflow: experiment {spec.name!r} (id {tracker.experiment_id}), parent run "
        f"{tracker.parent_run_id}",
        f"    review with: ablate ui {spec.name}{_uri_flag(tracker.uri)}",
    ]
    return "\n".join(lines)


def _uri_flag(uri: str) -> str:
    return "" if uri == tracking.default_tracking_uri() else f" --tracking-uri {uri}"
