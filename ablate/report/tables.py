"""The ablation table of `ablate report` as Markdown, LaTeX (booktabs) and CSV.

One row per configuration, the reference first; each metric as mean ± 95% CI over seeds, then
the difference to the reference with its significance marker (paired t-test, Holm-corrected:
* p < 0.05, ** p < 0.01; "(within noise)" when it is not beyond seed noise at 0.05), then the
seeds a paired test would need to confirm that difference (ablate.report.power). Under the table:
seed SD against the spread between configurations, and a warning with fewer than 3 seeds. The
CSV keeps every number unrounded, p-values included.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ablate.report import power
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
    at: str = "last epoch of completed trials"  # which values: the caption says so

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
        if math.isnan(comp.delta):
            return "—"
        verdict = {True: "", False: " (within noise)", None: " (untested)"}[comp.beyond_noise]
        return f"{comp.delta:+.2f}{comp.marker}{verdict}"

    def needed(self, index: int, metric: str) -> float:
        """Seeds a paired t-test needs to confirm this row's Δ (power 0.8, alpha 0.05)."""
        if index == 0:
            return math.nan
        comp = self.comparisons[index][metric]
        return power.seeds_needed(comp.delta, comp.sd)

    def notes(self) -> list[str]:
        """Seed noise against the spread between configurations, and the few-seeds warning."""
        lines = [
            power.noise_line([c.seed_values(m) for c in self.configs], metric_name(m))
            for m in self.metrics
        ]
        fewest = min((self.seeds(c) for c in self.configs), default=0)
        warning = power.few_seeds_warning(fewest) if self.configs else ""
        return ([warning] if warning else []) + lines


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
        *(f"seeds for Δ {n}" for n in names),
    ]


def body_rows(table: AblationTable) -> list[list[str]]:
    rows = []
    for i, config in enumerate(table.configs):
        row = [config.label, *(factor_value(config, k) for k in table.factors)]
        row.append(str(table.seeds(config)))
        row += [table.cell(config, m) for m in table.metrics]
        row += [table.delta(i, m) for m in table.metrics]
        row += [power.fmt_needed(table.needed(i, m)) for m in table.metrics]
        rows.append(row)
    return rows


def caption(table: AblationTable) -> str:
    return (
        f"{table.split} split, {table.at}: mean ± 95% CI over seeds "
        f"(t-distribution). Δ: difference to the reference row ({table.reference}), "
        "paired t-test over seeds, Holm-corrected per column: * p < 0.05, ** p < 0.01, "
        "(within noise) not beyond seed noise at 0.05. Seeds for Δ: pairs a two-sided paired "
        "t-test needs to confirm that Δ at power 0.8, alpha 0.05 (noncentral t, observed SD of "
        "the differences)."
    )


def to_markdown(table: AblationTable) -> str:
    header = header_cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body_rows(table)]
    notes = "".join(f"\n\n{line}" for line in table.notes())
    return "\n".join(lines) + "\n\n" + caption(table) + notes + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_latex(table: AblationTable, label: str) -> str:
    """A booktabs table that compiles as is (needs \\usepackage{booktabs})."""
    names = [metric_name(m) for m in table.metrics]
    factors = [factor_name(k) for k in table.factors]
    columns = "l" + "l" * len(factors) + "c" * len(names) + "r" * (2 * len(names))
    head = ["Configuration", *factors, *names, *(f"$\\Delta$ {n}" for n in names)]
    head += [f"seeds $\\Delta$ {n}" for n in names]
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
        cells += [_latex_needed(table.needed(i, m)) for m in table.metrics]
        lines.append(" & ".join(cells) + " \\\\")
        if i == 0 and len(table.configs) > 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par\\footnotesize {latex_escape(n)}" for n in table.notes()]
    lines.append("\\end{table}")
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
    noise = "^{\\mathrm{n.s.}}" if comp.beyond_noise is False else ""
    return f"${comp.delta:+.2f}{marker}{noise}$"


def _latex_needed(needed: float) -> str:
    return "--" if math.isnan(needed) else latex_escape(power.fmt_needed(needed))


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
    """Every number unrounded per metric: mean, CI half-width, Δ, raw and Holm p-value, pairs,
    SD of the paired differences, beyond noise (Holm p < 0.05), seeds needed (inf: over 1000)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    metric_cols = [f"{m}:{s}" for m in table.metrics for s in STATS]
    writer.writerow(["configuration", "trials", *table.factors, "seeds", *metric_cols])
    for i, config in enumerate(table.configs):
        row: list[Any] = [config.label, " ".join(config.trials)]
        row += [config.factors.get(k) for k in table.factors]
        row.append(table.seeds(config))
        for metric in table.metrics:
            mean, half = mean_ci(config.seed_values(metric))
            comp = table.comparisons[i][metric]
            row += [mean, half, comp.delta, comp.p, comp.p_holm, comp.n, comp.sd]
            row += [_flag(comp.beyond_noise), table.needed(i, metric)]
        writer.writerow(["" if _is_nan(v) else v for v in row])
    return out.getvalue()


STATS = ("mean", "ci95", "delta", "p", "p_holm", "pairs", "sd_diff", "beyond_noise", "seeds_needed")


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def shown_factors(configs: Sequence[Config]) -> list[str]:
    """Factors that vary between configurations, without `variant` (it is the label)."""
    keys = sorted({k for c in configs for k in c.factors} - {VARIANT})
    return [k for k in keys if len({str(c.factors.get(k)) for c in configs}) > 1]
