"""The files of `ablate report`: tables, optuna.db, PNG plots and the HTML page, from an
`ablate.report.Analysis`. Each section is built by one function that returns its HTML (and
writes its files), so a section that cannot be drawn (too few trials, no MLflow) says why
instead of failing the report."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from ablate.report import analysis, front, learned, paper, plots, prompts, tables
from ablate.report import markup as h
from ablate.report.inputs import StudyInfo
from ablate.report.learned import OPTUNA_FILE
from ablate.report.summary import Analysis, describe
from ablate.results import uncell


def write(data: Analysis, out: Path, evaluator: str) -> None:
    """Every file, then the HTML page that shows them."""
    curves = data.curves
    sections = [
        h.Section("table", "Ablation table", _table_section(data, out)),
        *([h.Section("datasets", "Per dataset", _paper_section(data, out))] if data.paper else []),
        h.Section(
            "importance", "Parameter importance", learned.importance_section(data, out, evaluator)
        ),
        h.Section("scheduler", "What the scheduler learned", learned.scheduler_section(data, out)),
        h.Section("effects", "Factor effects", _effects_section(data, out)),
        h.Section("curves", "Learning curves", _curves_section(data, curves, out)),
        h.Section("parallel", "Parallel coordinates", _parallel_section(data, curves, out)),
        h.Section("prompts", "Learned prompts", _prompts_section(data, out)),
        h.Section("diagnostics", "Diagnostics", _diagnostics_section(data, out)),
    ]
    if len(data.info.objectives) > 1:
        pareto = h.Section("front", "Pareto front", front.front_section(data, out))
        sections.insert(1, pareto)
    overview = h.Section("overview", "Study", _overview(data))
    subtitle = f"ablate report: {len(curves)} trials, metric {data.info.metric} ({data.info.goal})"
    page = h.page(f"Study {data.info.name}", subtitle, [overview, *sections])
    (out / "report.html").write_text(page, encoding="utf-8")


def _overview(data: Analysis) -> str:
    info, c = data.info, data.counts
    seeds = sorted({int(r["seed"]) for r in data.rows})
    pairs = [
        ("results", str(info.folder / "results.parquet")),
        (
            "trials",
            f"{sum(c.values())}: {c['completed']} completed, {c['pruned']} pruned, "
            f"{c['failed']} failed",
        ),  # fmt: skip
        ("seeds", ", ".join(map(str, seeds))),
        ("searched", ", ".join(data.params) or "nothing"),
        ("metric", f"{_objectives(info)}; the table shows the {data.table.split} split"),
        ("reference row", data.table.reference),
        ("MLflow", f"{info.uri} parent run {info.parent_run_id}" if info.uri else "not used"),
        (
            "Optuna",
            f"{info.folder / OPTUNA_FILE}, study {info.name!r}: optuna-dashboard "
            f"sqlite:///{info.folder / OPTUNA_FILE}",
        ),  # fmt: skip
    ]
    pairs += [("note", n) for n in info.notes]
    return h.facts(pairs)


def _objectives(info: StudyInfo) -> str:
    spelled = [f"{n} ({g})" for n, g in info.objectives or [(info.metric, info.goal)]]
    ranked = (
        " (the tables rank by the first; the Pareto front weighs all)" if len(spelled) > 1 else ""
    )
    return ", ".join(spelled) + ranked


# ---- table --------------------------------------------------------------------------------------
def _table_section(data: Analysis, out: Path) -> str:
    table = data.table
    if not table.configs:
        return h.note("No completed trial yet: nothing to tabulate.")
    (out / "ablation.md").write_text(tables.to_markdown(table), encoding="utf-8")
    (out / "ablation.tex").write_text(tables.to_latex(table, data.info.name), encoding="utf-8")
    (out / "ablation.csv").write_text(tables.to_csv(table), encoding="utf-8")
    header = tables.header_cells(table)
    numeric = 1 + len(table.factors)
    body = h.table(header, tables.body_rows(table), numeric_from=numeric, highlight_first=True)
    files = "Files: ablation.md, ablation.tex (booktabs), ablation.csv (unrounded, with p-values)."
    notes = "".join(h.note(line) for line in table.notes())
    return body + h.note(tables.caption(table)) + notes + h.note(files)


def _paper_section(data: Analysis, out: Path) -> str:
    """A suite's table in the papers' layout: base / new / HM per dataset, and the average."""
    table = data.paper
    assert table is not None
    (out / "paper.md").write_text(paper.to_markdown(table), encoding="utf-8")
    (out / "paper.tex").write_text(paper.to_latex(table, data.info.name), encoding="utf-8")
    names = [tables.metric_name(m) for m in table.metrics]
    wide = len(table.blocks) > 1
    header = ["Dataset"] + [f"{b.label} {n}" if wide else n for b in table.blocks for n in names]
    body = [[d, *(paper.fmt(v) for v in values)] for d, values in table.rows()]
    notes = "".join(h.note(line) for line in table.notes())
    files = "Files: paper.md, paper.tex (booktabs)."
    return h.table(header, body, numeric_from=1) + h.note(table.caption()) + notes + h.note(files)


# ---- factor effects -----------------------------------------------------------------------------
def effects(data: Analysis) -> list[plots.Effect]:
    """Per searched parameter with more than one value: the study metric per value."""
    final = analysis.final_rows(data.rows)
    metric = data.info.metric
    out = []
    for key in data.params:
        levels = _levels([uncell(r.get(key)) for r in final])
        if key == analysis.VARIANT:  # the design's order: base first, as in the table
            design = [c.factors.get(key) for c in data.configs]
            levels = sorted(levels, key=lambda v: design.index(v) if v in design else len(design))
        if len(levels) < 2:
            continue
        out.append(_effect(final, key, levels, metric))
    return out


def _levels(values: list[Any]) -> list[Any]:
    distinct = {describe(v): v for v in values}
    return [distinct[k] for k in sorted(distinct, key=lambda k: _sort_key(distinct[k]))]


def _sort_key(value: Any) -> tuple[int, Any]:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return (0, value) if numeric else (1, describe(value))


def _effect(final: list[dict[str, Any]], key: str, levels: list[Any], metric: str) -> plots.Effect:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels)
    means, lows, highs = [], [], []
    for level in levels:
        mine = [r for r in final if describe(uncell(r.get(key))) == describe(level)]
        by_seed: dict[int, list[float]] = {}
        for r in mine:
            if r.get(metric) is not None:
                by_seed.setdefault(int(r["seed"]), []).append(float(r[metric]))
        mean, half = analysis.mean_ci([sum(v) / len(v) for v in by_seed.values()])
        means.append(mean)
        lows.append(mean - half)
        highs.append(mean + half)
    points = _config_points(final, key, metric)
    log = numeric and min(levels) > 0 and max(levels) / min(levels) >= 100
    return plots.Effect(key, levels, means, lows, highs, points, log, numeric)


def _config_points(final: list[dict[str, Any]], key: str, metric: str) -> list[tuple[Any, float]]:
    by_trial: dict[str, list[float]] = {}
    value: dict[str, Any] = {}
    for r in final:
        if r.get(metric) is not None:
            by_trial.setdefault(r["trial_key"], []).append(float(r[metric]))
            value[r["trial_key"]] = uncell(r.get(key))
    return [(value[k], sum(v) / len(v)) for k, v in by_trial.items()]


def _effects_section(data: Analysis, out: Path) -> str:
    found = effects(data)
    if not found:
        return h.note("No searched parameter took two values in completed trials.")
    image = plots.factor_effects(found, data.info.metric)
    (out / "factor_effects.png").write_bytes(image)
    text = (
        f"{data.info.metric} at the last epoch of completed trials against each searched "
        "parameter: grey dots are configurations (seed means); the line and band (numbers) or "
        "points and bars (choices) are the mean "
        "and 95% CI over seeds of all configurations sharing a value (marginal over the other "
        "parameters, so an unbalanced search mixes their effects in)."
    )
    return h.image(image, "factor effects") + h.note(text)


# ---- learning curves and parallel coordinates ------------------------------------------------
def _curves_section(data: Analysis, curves: dict[str, dict[str, Any]], out: Path) -> str:
    drawn = [
        plots.Curve(
            name,
            t["status"],
            list(t["curve"]),
            list(t["curve"].values()),
            _curve_label(name, t["row"], data.params),
        )  # fmt: skip
        for name, t in curves.items()
        if t["curve"]
    ]
    if not drawn:
        return h.note(f"No trial reported {data.info.metric} yet.")
    best = data.best.trials[0] if data.best and data.best.trials else None
    image = plots.learning_curves(drawn, data.info.metric, best)
    (out / "learning_curves.png").write_bytes(image)
    text = (
        f"Seed mean of {data.info.metric} per epoch for every trial. Pruned trials are dashed and "
        "end in an x at the epoch the scheduler stopped them (its rungs); the thick line is the "
        "best configuration."
    )
    return h.image(image, "learning curves") + h.note(text)


def _is_log(declared: Any, points: list[dict[str, Any]], key: str) -> bool:
    """Log axis: as the spec declares, else for positive numbers spanning two decades."""
    if declared is not None:
        return bool(getattr(declared, "log", False))
    values = [p[key] for p in points]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    return min(values) > 0 and max(values) / min(values) >= 100


def _curve_label(name: str, row: dict[str, Any], params: list[str]) -> str:
    if analysis.VARIANT in params:
        return f"{name} {row.get(analysis.VARIANT)}"
    values = " ".join(f"{k.rsplit('.', 1)[-1]}={_short(uncell(row.get(k)))}" for k in params[:3])
    return f"{name} {values}"


def _parallel_section(data: Analysis, curves: dict[str, dict[str, Any]], out: Path) -> str:
    metric = data.info.metric
    points = []
    for trial in curves.values():
        if trial["status"] in ("completed", "pruned") and trial["curve"]:
            values = {k: uncell(trial["row"].get(k)) for k in data.params}
            values = {
                k: v if isinstance(v, int | float) else describe(v) for k, v in values.items()
            }
            last = trial["curve"][max(trial["curve"])]
            points.append(values | {metric: last, "status": trial["status"]})
    if not data.params or not points:
        return h.note("Nothing searched or nothing finished: no parallel coordinates.")
    log_keys = {k for k in data.params if _is_log(data.info.distributions.get(k), points, k)}
    image = plots.parallel_coordinates(points, data.params, metric, log_keys)
    (out / "parallel_coordinates.png").write_bytes(image)
    return h.image(image, "parallel coordinates") + h.note(
        "One line per trial through its parameter values to its last seed-mean metric."
    )


# ---- prompts and diagnostics ---------------------------------------------------------
def _prompts_section(data: Analysis, out: Path) -> str:
    info, best = data.info, data.best
    if best is None:
        return h.note("No completed configuration: no prompts to show.")
    if not info.uri:
        return h.note("MLflow is not used: the learned prompts (seed-run artifacts) are not read.")
    from ablate import tracking

    runs = {}
    for key in best.trial_keys:
        runs |= tracking.seed_runs(info.uri, info.experiment_id, key)
    if not runs:
        return h.note(f"No seed runs of {best.label} found in MLflow.")
    seed, run_id = sorted(runs.items())[0]
    with tempfile.TemporaryDirectory() as tmp:
        described_path = tracking.download(info.uri, run_id, "prompts.json", Path(tmp))
        tensors_path = tracking.download(info.uri, run_id, "prompts.pt", Path(tmp))
        described = json.loads(described_path.read_text()) if described_path else {}
        similarity = prompts.prompt_similarity(tensors_path) if tensors_path else None
    if described:
        (out / "best_prompts.json").write_text(json.dumps(described, indent=1), encoding="utf-8")
    intro = h.note(
        f"Best configuration {best.label} (by {info.metric}), seed {seed}: each learned text "
        "context vector shown as its nearest vocabulary tokens by cosine similarity (CoOp's "
        "reading; the tokens are a hint, not the prompt's meaning) and its norm."
    )
    return intro + _token_tables(described) + _similarity(similarity, out) + _mpl_layers(described)


def _token_tables(described: dict[str, Any]) -> str:
    parts = []
    for title, rows in prompts.nearest_token_tables(described):
        k = max((len(r) for r in rows), default=2) - 2
        header = ["vector", "norm", *(f"#{i + 1}" for i in range(k))]
        parts.append(h.heading(title) + h.table(header, rows, css="tok"))
    return "".join(parts) or h.note("prompts.json has no text-width vectors to read.")


def _similarity(found: tuple[list[list[float]], list[str]] | None, out: Path) -> str:
    if found is None:
        return ""
    matrix, labels = found
    image = plots.heatmap(matrix, labels, "Cosine similarity between prompts")
    (out / "prompt_similarity.png").write_bytes(image)
    return (
        h.heading("Similarity between the prompts (multi-prompt method)")
        + h.image(image, "prompt similarity")
        + h.note(
            "Near 1 off the diagonal: the prompts collapsed into one and the extra ones add "
            "nothing; the diag/prompt_cos_* columns track this per epoch."
        )  # fmt: skip
    )


def _mpl_layers(described: dict[str, Any]) -> str:
    layers = prompts.layer_prompt_counts(described)
    if not layers:
        return ""
    rows = [[str(layer), str(text), str(vision)] for layer, text, vision in layers]
    header = ["layer", "text prompts", "vision prompts added"]
    return h.heading("Prompts per layer (MPL)") + h.table(header, rows, 1)


def _diagnostics_section(data: Analysis, out: Path) -> str:
    columns = analysis.metric_columns(analysis.final_rows(data.rows), "diag/")
    if not columns or not data.configs:
        return h.note("The method logged no diagnostics (diag/* columns).")
    rows = [[c.label, *(_fmt(c.mean(col)) for col in columns)] for c in data.configs]
    body = h.table(["configuration", *(c[5:] for c in columns)], rows, 1, highlight_first=True)
    body += h.note(
        "Seed means at the last epoch. PMPO: prompt_cos_mean / max between its prompts; MoPE: "
        "expert_usage_j (mean routing weight per expert) and routing_entropy (at most ln k)."
    )
    return body + _expert_usage(data, columns, out)


def _expert_usage(data: Analysis, columns: list[str], out: Path) -> str:
    usage = sorted((c for c in columns if c.startswith("diag/expert_usage_")),
                   key=lambda c: int(c.rsplit("_", 1)[-1]))  # fmt: skip
    if not usage or data.best is None:
        return ""
    values = [data.best.mean(c) for c in usage]
    labels = [c.rsplit("_", 1)[-1] for c in usage]
    image = plots.bars(values, labels, f"Expert usage of {data.best.label}", "mean routing weight")
    (out / "expert_usage.png").write_bytes(image)
    return h.heading("MoPE expert usage (best configuration)") + h.image(image, "expert usage")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else describe(value)[:12]


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"
