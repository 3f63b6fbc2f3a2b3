"""The numbers of a report, computed once from the study's table and shared by its files and
its HTML page: configurations, comparisons, the ablation table, the best configuration."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ablate import results
from ablate.report import analysis
from ablate.report.analysis import Config
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


def analyse(info: StudyInfo) -> Analysis:
    rows = results.rows(info.folder)
    params = analysis.parameter_columns(rows)
    final = analysis.final_rows(rows)
    split = analysis.choose_split(final, info.metric)
    metrics = analysis.split_metrics(final, split)
    extra = [info.metric, *analysis.metric_columns(final, "diag/")]
    configs = analysis.configurations(final, params, [*metrics, *extra])
    configs = analysis.order(configs, info.metric, info.goal)
    comparisons = analysis.compare_all(configs, metrics) if configs else []
    ablation = any(c.factors.get(analysis.VARIANT) == "base" for c in configs)
    reference = "the base variant" if ablation else f"the best configuration by {info.metric}"
    table = AblationTable(split, metrics, shown_factors(configs), configs, comparisons, reference)
    return Analysis(info, rows, params, table, configs, _best(configs, info), _counts(rows))


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
