"""What a study found, from what its trials came to: the best configuration (one objective) or
the Pareto front (several objectives), as `ablate search` prints it at the end and as the
study's MLflow parent run records it (tags, metrics, and pareto_front.csv for a front).
Ray-free: the driver builds it from the `StudyOutcome`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from ablate.search import pareto
from ablate.search.outcome import StudyOutcome, TrialOutcome
from ablate.spec import StudySpec

FRONT_FILE = "pareto_front.csv"  # the front as an artifact of the parent run
MAX_TAG = 5000  # MLflow's tag value limit


@dataclass
class Answer:
    objectives: list[tuple[str, str]]  # (metric name, goal), the first one first
    members: list[TrialOutcome]  # the best trial, or the front ordered by the first objective
    candidates: int  # completed configurations that reported every objective

    @property
    def is_front(self) -> bool:
        return len(self.objectives) > 1

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.objectives]


def find(spec: StudySpec, outcome: StudyOutcome) -> Answer:
    """The best completed trial on the seed means, or the non-dominated ones."""
    objectives = [(o.name, o.goal) for o in spec.objectives]
    names, goals = [n for n, _ in objectives], [g for _, g in objectives]
    done = _configurations(
        t for t in outcome.trials if t.status == "completed" and all(n in t.metrics for n in names)
    )
    sign = 1.0 if goals[0] == "maximize" else -1.0
    if len(objectives) == 1:
        members = [max(done, key=lambda t: sign * t.metrics[names[0]])] if done else []
    else:
        front = pareto.non_dominated([[t.metrics[n] for n in names] for t in done], goals)
        members = sorted((done[i] for i in front), key=lambda t: -sign * t.metrics[names[0]])
    return Answer(objectives, members, len(done))


def _configurations(trials: Iterable[TrialOutcome]) -> list[TrialOutcome]:
    """One trial per configuration, the first sampled (a sampler may propose one again)."""
    first: dict[str, TrialOutcome] = {}
    for t in sorted(trials, key=lambda t: t.name):
        first.setdefault(_json(t.params), t)
    return list(first.values())


def summary_lines(answer: Answer, seeds: list[int], datasets: list[str] | None = None) -> list[str]:
    if not answer.members:
        return []
    over = f"over seeds {seeds}"
    if datasets:  # a suite: the mean over its datasets of each one's seed mean
        over = f"over {len(datasets)} datasets of the mean {over}"
    if not answer.is_front:
        best, name = answer.members[0], answer.names[0]
        lines = [
            f"Best configuration: {best.name}, {name} = {best.metrics[name]:.2f} (mean {over})"
        ]
        return lines + [f"    {k} = {v}" for k, v in sorted(best.params.items())]
    spelled = ", ".join(f"{n} ({g})" for n, g in answer.objectives)
    lines = [
        f"Pareto front: {len(answer.members)} of {answer.candidates} completed configurations "
        f"are not beaten on every objective at once ({spelled}; means {over}):"
    ]
    for t in answer.members:
        values = "  ".join(f"{n} = {fmt(t.metrics[n])}" for n in answer.names)
        params = ", ".join(f"{k}={v}" for k, v in sorted(t.params.items()))
        lines.append(f"    {t.name}  {values}  ({params})")
    return lines


def fmt(value: float) -> str:
    """Two decimals, none for a whole number (a parameter count)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def run_tags(answer: Answer) -> dict[str, str]:
    """The parent run's tags: which trials answer the study, and their configurations."""
    if not answer.members:
        return {}
    configs = {t.name: t.params for t in answer.members}
    if not answer.is_front:
        best = answer.members[0]
        return {"ablate.best_trial": best.name, "ablate.best_config": _json(best.params)}
    return {
        "ablate.pareto_front": " ".join(t.name for t in answer.members),
        "ablate.pareto_configs": _json(configs),
    }


def run_metrics(answer: Answer) -> dict[str, float]:
    """best/<metric> for every metric of the best trial; pareto/<trial>/<objective> for a front."""
    if not answer.is_front:
        return {f"best/{k}": v for t in answer.members for k, v in t.metrics.items()}
    return {f"pareto/{t.name}/{n}": t.metrics[n] for t in answer.members for n in answer.names}


def front_table(answer: Answer) -> str:
    """The front as CSV: trial, each objective, every other metric, each parameter."""
    others = sorted({k for t in answer.members for k in t.metrics} - set(answer.names))
    params = sorted({k for t in answer.members for k in t.params})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *answer.names, *others, *params])
    for t in answer.members:
        row = [t.name, *(t.metrics.get(k, "") for k in [*answer.names, *others])]
        writer.writerow(row + [_cell(t.params.get(k, "")) for k in params])
    return out.getvalue()


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)[:MAX_TAG]


def _cell(value: object) -> object:
    return json.dumps(value) if isinstance(value, list | dict) else value
