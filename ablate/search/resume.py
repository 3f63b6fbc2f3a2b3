"""A study's memory across invocations: resume an interrupted one, extend a finished one.

`results/<study>/study.json` records the MLflow parent run, the Ray experiment folder and the
file's hash. Running `ablate search FILE` again then:
- resumes the Ray experiment when the last invocation did not finish (driver killed, machine
  rebooted, Ctrl-C) and the file is unchanged: finished trials stay, unfinished ones continue
  from their last epoch, the searcher's state is kept, the same MLflow runs are continued;
- says there is nothing to do when it finished and the file is unchanged;
- extends the study when the file changed (more trials, more seeds): a new Ray experiment whose
  searcher is warm-started with the finished configurations, while every (configuration, seed)
  cell the results table already holds is reused instead of trained again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ablate import results
from ablate.search import space
from ablate.spec import StudySpec

STATE_FILE = "study.json"
log = logging.getLogger("ablate")


@dataclass
class Prior:
    """Configurations earlier invocations of this study finished (to extend it, not redo it).

    With `rewards` (per configuration, the seed mean of each objective), Optuna is warm-started
    with them as completed trials; without (new seeds), they are evaluated again first, and the
    trials skip the (configuration, seed) cells that the results table already holds.
    """

    configs: list[dict[str, Any]]
    rewards: list[list[float]] | None
    redo: list[dict[str, Any]] = field(default_factory=list)  # rows lost: evaluated first


@dataclass
class Launch:
    """Where and how this invocation runs: a new Ray experiment, or the restore of one."""

    ray_dir: Path | str  # <results>/<study>/ray/<experiment name>; a URI on shared storage
    restore: bool = False
    prior: Prior | None = None
    num_trials: int | None = None  # None = the file's
    invocation: int = 1  # how many times `ablate search` started this study, this one included


@dataclass
class StudyState:
    spec_sha256: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    ray_dir: str
    status: str  # running | finished | interrupted
    invocation: int = 1

    def save(self, study_dir: results.Location) -> None:
        results.write_text(study_dir, STATE_FILE, json.dumps(asdict(self), indent=1))


def load_state(study_dir: results.Location) -> StudyState | None:
    text = results.read_text(study_dir, STATE_FILE)
    if text is None:
        return None
    try:
        return StudyState(**json.loads(text))
    except (ValueError, TypeError):
        path = results.join(study_dir, STATE_FILE)
        log.warning(f"ablate: ignoring unreadable {path}; starting the study afresh")
        return None


def decide(
    spec: StudySpec,
    state: StudyState | None,
    uri: str,
    study_dir: results.Location,
    can_restore: Callable[[str], bool],
) -> str:
    """new | resume | done | extend; `can_restore` tells whether Ray can continue a folder."""
    if state is None or state.tracking_uri != uri:
        return "extend" if _has_results(study_dir) else "new"
    same_file = state.spec_sha256 == spec.sha256
    if same_file and state.status != "finished" and can_restore(state.ray_dir):
        return "resume"
    if same_file and state.status == "finished":
        return "done"
    return "extend"


def _has_results(study_dir: results.Location) -> bool:
    return results.has_results(study_dir)


def extension(
    spec: StudySpec,
    study_dir: results.Location,
    invocation: int,
    lost: list[dict[str, Any]] | None = None,
) -> Launch:
    """A new Ray experiment that continues from what the results table holds; configurations
    whose rows were `lost` (a file set aside) are trained again first."""
    ray_dir = results.join(study_dir, "ray", f"{spec.name}-{invocation}")
    finished = finished_configs(spec, study_dir)
    if spec.sampler.exhaustive or not (finished or lost):
        # a grid (an exhaustive sampler) runs again: finished cells are reused, not retrained
        return Launch(ray_dir, invocation=invocation)
    configs = [params for params, _, _ in finished]
    lost = lost or []
    if all(set(spec.seeds) <= seeds for _, seeds, _ in finished):
        rewards = [reward for _, _, reward in finished]
        remaining = spec.num_trials - len(configs)
        trials = len(lost) + max(0, remaining - len(lost))  # the lost ones are of the budget
        prior = Prior(configs, rewards, redo=lost)
        return Launch(ray_dir, prior=prior, num_trials=trials, invocation=invocation)
    configs += lost  # new seeds: every configuration is evaluated again, held cells reused
    trials = max(spec.num_trials, len(configs))
    return Launch(ray_dir, prior=Prior(configs, None), num_trials=trials, invocation=invocation)


def lost_configs(
    spec: StudySpec, study_dir: results.Location, trained: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The `trained` configurations (as the searcher suggested them) of which the results
    table holds no row: a part or table that could not be read was set aside."""
    table = results.read_all(study_dir)
    keys = [p.key for p in spec.search_parameters()]
    held = {tuple(r.get(k) for k in keys) for r in (table.to_pylist() if table else [])}
    lost = []
    for config in trained:
        if set(config) != set(keys):  # a trial of an earlier version of the file
            continue
        values = space.decode(config)
        if tuple(results.cell(values.get(k)) for k in keys) not in held:
            lost.append(config)
    return lost


def finished_configs(
    spec: StudySpec, study_dir: results.Location
) -> list[tuple[dict[str, Any], set[int], list[float]]]:
    """(sampled params, seeds done, seed mean of each objective at the last epoch) per finished
    config; a suite's configuration counts the seeds done on every dataset, and suite means."""
    table = results.read_all(study_dir)
    if table is None:
        return []
    keys = [p.key for p in spec.search_parameters()]
    rows = [r for r in table.to_pylist() if r["status"] in ("completed", "pruned")]
    by_config: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for row in rows:
        if all(k in row for k in keys):
            config = json.dumps([row[k] for k in keys], default=str)
            by_config.setdefault(config, {}).setdefault(row.get("dataset"), []).append(row)
    out = []
    names = [o.name for o in spec.objectives]
    for per_dataset in by_config.values():
        if spec.datasets and set(per_dataset) != set(spec.datasets):
            continue  # a suite's configuration is known once every dataset has a result
        finals = [_final(group, names) for group in per_dataset.values()]
        if not all(finals):
            continue
        first = finals[0][0]
        params = {k: space.encode(results.uncell(first[k])) for k in keys}
        seeds = set.intersection(*({r["seed"] for r in final} for final in finals))
        rewards = [
            sum(sum(r[name] for r in f) / len(f) for f in finals) / len(finals) for name in names
        ]
        out.append((params, seeds, rewards))
    return out


def _final(group: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The rows of a configuration's (dataset's) last epoch that hold every objective."""
    last = max(r["epoch"] for r in group)
    return [
        r for r in group if r["epoch"] == last and all(r.get(name) is not None for name in names)
    ]
