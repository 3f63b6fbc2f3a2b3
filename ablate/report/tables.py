"""The ablation table of `ablate report` as Markdown, LaTeX (booktabs) and CSV.

One row per configuration, the reference first; each metric as mean ± 95% CI over seeds, then
the difference to the reference with its significance marker (paired t-test, Holm-corrected:
* p < 0.05, ** p < 0.01). The CSV keeps every number unrounded, p-values included.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ablate.report.analysis import VARIANT, Comparison, Config, mean_ci

NAMES = {"base": "Base", "new": "New", "hm": "HM"}


@dataclass
class AblationTable:
    split: str
    metrics: list[str]  # e.g. test/base, test/new, test/hm
    factors: list[str]  # parameter columns shown beside the label
    configs: list[Config]
    comparisons: list[dict[str, Comparison]]
    reference: str  # why the first row is the reference, for the caption

    def seeds(self, config: Config) -> int:
        return max((len(config.seed_values(m)) for m in self.metrics), default=0)

    def cell(self, config: Config, metric: str, digits: int = 2) -> str:
        mean, half = mean_ci(config.seed_values(metric))
        if math.isnan(mean):
            return "—"
        return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")

    def delta(self, index: int, metric: str) -> str:
        if index == 0:
            return "—"
        comp = self.comparisons[index][metric]
        return "—" if math.isnan(comp.delta) else f"{comp.delta:+.2f}{comp.marker}"


def metric_name(metric: str) -> str:
    return NAMES.get(metric.split("/", 1)[-1], metric)


def factor_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def factor_value(config: Config, key: str) -> str:
    value = config.factors.get(key)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def header_cells(table: AblationTable) -> list[str]:
    names = [metric_name(m) for m in table.metrics]
    return [
        "Configuration",
        *(factor_name(k) for k in table.factors),
        "seeds",
        *names,
        *(f"Δ {n}" for n in names),
    ]


def body_rows(table: AblationTable) -> list[list[str]]:
    rows = []
    for i, config in enumerate(table.configs):
        row = [config.label, *(factor_value(config, k) for k in table.factors)]
        row.append(str(table.seeds(config)))
        row += [table.cell(config, m) for m in table.metrics]
        row += [table.delta(i, m) for m in table.metrics]
        rows.append(row)
    return rows


def caption(table: AblationTable) -> str:
    return (
        f"{table.split} split, last epoch of completed trials: mean ± 95% CI over seeds "
        f"(t-distribution). Δ: difference to the reference row ({table.reference}), "
        "paired t-test over seeds, Holm-corrected per column: * p < 0.05, ** p < 0.01."
    )


def to_markdown(table: AblationTable) -> str:
    header = header_cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body_rows(table)]
    return "\n".join(lines) + "\n\n" + caption(table) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_latex(table: AblationTable, label: str) -> str:
    """A booktabs table that compiles as is (needs \\usepackage{booktabs})."""
    names = [metric_name(m) for m in table.metrics]
    factors = [factor_name(k) for k in table.factors]
    columns = "l" + "l" * len(factors) + "c" * len(names) + "r" * len(names)
    head = ["Configuration", *factors, *names, *(f"$\\Delta$ {n}" for n in names)]
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption(table))}}}",
        f"\\label{{tab:{latex_escape(label)}}}",
        f"\\begin{{tabular}}{{{columns}}}",
        "\\toprule",
        " & ".join(latex_escape(h) if "$" not in h else h for h in head) + " \\\\",
        "\\midrule",
    ]
    for i, config in enumerate(table.configs):
        cells = [latex_escape(config.label), *(latex_escape(factor_value(config, k))
                 for k in table.factors)]  # fmt: skip
        cells += [_latex_mean(config, m) for m in table.metrics]
        cells += [_latex_delta(table, i, m) for m in table.metrics]
        lines.append(" & ".join(cells) + " \\\\")
        if i == 0 and len(table.configs) > 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_mean(config: Config, metric: str) -> str:
    mean, half = mean_ci(config.seed_values(metric))
    if math.isnan(mean):
        return "--"
    ci = "" if math.isnan(half) else f"{{\\scriptsize$\\pm${half:.2f}}}"
    return f"{mean:.2f}{ci}"


def _latex_delta(table: AblationTable, index: int, metric: str) -> str:
    if index == 0:
        return "--"
    comp = table.comparisons[index][metric]
    if math.isnan(comp.delta):
        return "--"
    marker = f"^{{{comp.marker}}}" if comp.marker else ""
    return f"${comp.delta:+.2f}{marker}$"


LATEX_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "±": "$\\pm$",
    "Δ": "$\\Delta$",
    "<": "$<$",
    ">": "$>$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def to_csv(table: AblationTable) -> str:
    """Every number unrounded: mean, CI half-width, Δ, raw and Holm p-value per metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    metric_cols = [
        f"{m}:{s}" for m in table.metrics for s in ("mean", "ci95", "delta", "p", "p_holm", "pairs")
    ]
    writer.writerow(["configuration", "trials", *table.factors, "seeds", *metric_cols])
    for i, config in enumerate(table.configs):
        row: list[Any] = [config.label, " ".join(config.trials)]
        row += [config.factors.get(k) for k in table.factors]
        row.append(table.seeds(config))
        for metric in table.metrics:
            mean, half = mean_ci(config.seed_values(metric))
            comp = table.comparisons[i][metric]
            row += [mean, half, comp.delta, comp.p, comp.p_holm, comp.n]
        writer.writerow(["" if _is_nan(v) else v for v in row])
    return out.getvalue()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def shown_factors(configs: Sequence[Config]) -> list[str]:
    """Factors that vary between configurations, without `variant` (it is the label)."""
    keys = sorted({k for c in configs for k in c.factors} - {VARIANT})
    return [k for k in keys if len({str(c.factors.get(k)) for c in configs}) > 1]
