"""The report's Pareto front, for a study with several objectives: the completed configurations
no other one beats on every objective at once (on the seed means at the last epoch), as a table
(pareto_front.md, pareto_front.csv) and a scatter of the first two objectives (pareto.png)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ablate.report import markup as h
from ablate.report import plots, tables
from ablate.report.analysis import Config, mean_ci
from ablate.report.summary import Analysis
from ablate.search import pareto


def front(configs: list[Config], objectives: list[tuple[str, str]]) -> list[Config]:
    """The non-dominated configurations among those with every objective, best first by the
    first objective."""
    names, goals = [n for n, _ in objectives], [g for _, g in objectives]
    known = [c for c in configs if not any(math.isnan(c.mean(n)) for n in names)]
    members = [
        known[i] for i in pareto.non_dominated([[c.mean(n) for n in names] for c in known], goals)
    ]
    sign = 1.0 if goals[0] == "maximize" else -1.0
    return sorted(members, key=lambda c: -sign * c.mean(names[0]))


def front_section(data: Analysis, out: Path) -> str:
    objectives = data.info.objectives
    members = front(data.configs, objectives)
    if not members:
        return h.note("No completed configuration has every objective yet: no front.")
    names = [n for n, _ in objectives]
    factors = tables.shown_factors(data.configs)
    header = ["Configuration", *(tables.factor_name(k) for k in factors), "seeds", *names]
    rows = [
        [c.label, *(tables.factor_value(c, k) for k in factors), str(_seeds(c, names))]
        + [_cell(c, n) for n in names]
        for c in members
    ]
    (out / "pareto_front.md").write_text(_markdown(header, rows), encoding="utf-8")
    (out / "pareto_front.csv").write_text(_csv(members, factors, names), encoding="utf-8")
    spelled = ", ".join(f"{n} ({g})" for n, g in objectives)
    text = (
        f"{len(members)} of {len(data.configs)} completed configurations are on the Pareto front "
        f"of {spelled}: no other configuration is at least as good on every objective and better "
        "on one (seed means at the last epoch; mean ± 95% CI over seeds). Files: "
        "pareto_front.md, pareto_front.csv, pareto.png."
    )
    body = h.table(header, rows, numeric_from=1 + len(factors)) + h.note(text)
    return body + _scatter(data, members, objectives, out)


def _scatter(
    data: Analysis, members: list[Config], objectives: list[tuple[str, str]], out: Path
) -> str:
    (x, x_goal), (y, y_goal) = objectives[:2]
    known = [c for c in data.configs if not (math.isnan(c.mean(x)) or math.isnan(c.mean(y)))]
    points = [(c.mean(x), c.mean(y), c.label, c in members) for c in known]
    image = plots.pareto_scatter(points, (x, x_goal), (y, y_goal))
    (out / "pareto.png").write_bytes(image)
    more = " (the front is over every objective, so it need not look non-dominated here)"
    note = f"Every completed configuration on {x} and {y}; the front is marked" + (
        more if len(objectives) > 2 else "."
    )
    return h.image(image, "Pareto front") + h.note(note)


def _seeds(config: Config, names: list[str]) -> int:
    return max(len(config.seed_values(n)) for n in names)


def _cell(config: Config, metric: str) -> str:
    mean, half = mean_ci(config.seed_values(metric))
    text = f"{mean:.0f}" if mean.is_integer() else f"{mean:.2f}"
    return text if math.isnan(half) or half == 0 else f"{text} ± {half:.2f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(members: list[Config], factors: list[str], names: list[str]) -> str:
    """Unrounded: each objective's mean and CI half-width."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "configuration",
            "trials",
            *factors,
            *(f"{n}:{s}" for n in names for s in ("mean", "ci95")),
        ]
    )
    for c in members:
        stats = [v for n in names for v in mean_ci(c.seed_values(n))]
        row = [c.label, " ".join(c.trials), *(c.factors.get(k) for k in factors), *stats]
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return out.getvalue()
