"""The numbers of a report, computed once from the study's table and shared by its files and
its HTML page: configurations, comparisons, the ablation table, the best configuration, and what
the scheduler learned (pruned trials at matched fidelity, and the table at the highest epoch
every configuration reached)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ablate import results
from ablate.report import analysis, fidelity, paper
from ablate.report.analysis import Config
from ablate.report.fidelity import Fidelity
from ablate.report.inputs import StudyInfo
from ablate.report.tables import AblationTable, shown_factors


@dataclass
class Analysis:
    """Everything computed from the table, shared by the files and the HTML page."""

    info: StudyInfo
    rows: list[dict[str, Any]]
    params: list[str]
    table: AblationTable
    configs: list[Config]
    best: Config | None
    counts: dict[str, int]
    curves: dict[str, dict[str, Any]]  # trial_curves of the study metric
    fidelity: Fidelity
    common: AblationTable | None = None  # every configuration at the epoch all reached
    paper: paper.PaperTable | None = None  # a suite's per-dataset table, as the papers print it


def analyse(info: StudyInfo) -> Analysis:
    rows = results.rows(info.folder)
    params = analysis.parameter_columns(rows)
    final = analysis.final_rows(rows)
    split = analysis.choose_split(final, info.metric)
    metrics = analysis.split_metrics(final, split)
    objectives = [name for name, _ in info.objectives]
    extra = list(
        dict.fromkeys([info.metric, *objectives, *analysis.metric_columns(final, "diag/")])
    )
    configs = analysis.configurations(final, params, [*metrics, *extra])
    configs = analysis.order(configs, info.metric, info.goal)
    comparisons = analysis.compare_all(configs, metrics) if configs else []
    ablation = any(c.factors.get(analysis.VARIANT) == "base" for c in configs)
    reference = "the base variant" if ablation else f"the best configuration by {info.metric}"
    table = AblationTable(split, metrics, shown_factors(configs), configs, comparisons, reference)
    curves = trial_curves(rows, info.metric)
    learned = fidelity.analyse(curves, params, info.scheduler)
    best = _best(configs, info)
    common = _common_table(rows, params, info)
    per_dataset = _paper_table(table) if paper.is_suite(configs) else None
    return Analysis(
        info,
        rows,
        params,
        table,
        configs,
        best,
        _counts(rows),
        curves,
        learned,
        common,
        per_dataset,
    )


PAPER_BLOCKS = 3  # configurations side by side in a study's per-dataset table


def _paper_table(table: AblationTable) -> paper.PaperTable:
    """The reference and the next configurations of the ablation table, per dataset."""
    blocks = [paper.Block(c.label, c) for c in table.configs[:PAPER_BLOCKS]]
    what = f"{table.reference} first"
    if len(blocks) > 1:
        what += ", then the next rows of the ablation table"
    return paper.paper_table(blocks, table.metrics, what)


def _common_table(
    rows: list[dict[str, Any]], params: list[str], info: StudyInfo
) -> AblationTable | None:
    """Every configuration, pruned ones included, at the highest epoch all of them reached
    (None when nothing was pruned: the main table already holds every configuration)."""
    live = [r for r in rows if r["status"] != "failed" and r.get(info.metric) is not None]
    if not any(r["status"] == "pruned" for r in live):
        return None
    factors = [p for p in params if p not in analysis.DATASET_KEYS]
    reach: dict[str, int] = {}
    for r in live:
        key = json.dumps({k: r.get(k) for k in factors}, sort_keys=True, default=str)
        reach[key] = max(reach.get(key, 0), int(r["epoch"]))
    epoch = min(reach.values())
    at = [r for r in live if int(r["epoch"]) == epoch]
    split = info.metric.split("/", 1)[0] if "/" in info.metric else "val"
    metrics = analysis.split_metrics(at, split) or [info.metric]
    configs = analysis.configurations(at, params, list(dict.fromkeys([*metrics, info.metric])))
    configs = analysis.order(configs, info.metric, info.goal)
    ablation = any(c.factors.get(analysis.VARIANT) == "base" for c in configs)
    reference = "the base variant" if ablation else f"the best configuration by {info.metric}"
    reference += f" at epoch {epoch}"
    note = f"at epoch {epoch}, the highest all {len(configs)} configurations reached"
    comparisons = analysis.compare_all(configs, metrics)
    factors_shown = shown_factors(configs)
    return AblationTable(split, metrics, factors_shown, configs, comparisons, reference, note)


def _best(configs: list[Config], info: StudyInfo) -> Config | None:
    ranked = analysis.order(
        [c for c in configs if not math.isnan(c.mean(info.metric))], info.metric, info.goal
    )
    if ranked and ranked[0].factors.get(analysis.VARIANT) == "base":  # ablation: rank by metric
        sign = -1.0 if info.goal == "maximize" else 1.0
        ranked = sorted(ranked, key=lambda c: sign * c.mean(info.metric))
    return ranked[0] if ranked else None


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    status = {r["trial_name"]: r["status"] for r in rows}
    return {s: list(status.values()).count(s) for s in ("completed", "pruned", "failed")}


def trial_curves(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """trial name -> {status, key, params, curve: {epoch: seed mean of metric}}."""
    acc: dict[str, dict[str, Any]] = {}
    for row in rows:
        trial = acc.setdefault(
            row["trial_name"],
            {"status": row["status"], "key": row["trial_key"], "row": row, "epochs": {}},
        )
        if row.get(metric) is not None:
            trial["epochs"].setdefault(int(row["epoch"]), []).append(float(row[metric]))
    for trial in acc.values():
        trial["curve"] = {e: sum(v) / len(v) for e, v in sorted(trial["epochs"].items())}
    return dict(sorted(acc.items()))


def describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
