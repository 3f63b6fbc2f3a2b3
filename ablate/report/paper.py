"""The papers' table of a suite of datasets: base / new / HM per dataset and their average.

Each column block is one configuration: a study's best configurations, or, for `ablate report
A B ...`, each study's best one side by side. A cell is the mean over seeds. As CoOp, CoCoOp,
MaPLe and PMPO report it, the HM of a dataset is the harmonic mean of its mean base and mean new
accuracy, and the Average row is the mean over datasets of base and new with the HM of those two
means (not the mean of HMs). Under the table: the average HM's 95% CI over seeds, and each block
against the first, paired over the (dataset, seed) cells both have (t-test, Holm-corrected), with
the seeds a paired test would need to confirm the difference (`ablate.report.power`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablate.report import power
from ablate.report.analysis import Comparison, Config, holm, mean_ci, paired
from ablate.report.tables import latex_escape, metric_name

AVERAGE = "Average"


@dataclass
class Block:
    """One column block: a configuration under its label (a study, or a study's configuration)."""

    label: str
    config: Config


@dataclass
class PaperTable:
    blocks: list[Block]
    metrics: list[str]  # e.g. test/base, test/new, test/hm: the columns of every block
    datasets: list[str]
    what: str  # which configurations the blocks are, for the caption

    @property
    def base_to_new(self) -> bool:
        return [m.rsplit("/", 1)[-1] for m in self.metrics] == ["base", "new", "hm"]

    def value(self, block: Block, dataset: str, metric: str) -> float:
        """The mean over seeds on `dataset` (HM of the means under base-to-new), or the
        Average row's value."""
        if self.base_to_new and metric == self.metrics[2]:
            base, new = (self.value(block, dataset, m) for m in self.metrics[:2])
            return harmonic(base, new)
        if dataset == AVERAGE:
            means = [self.value(block, d, metric) for d in self.datasets]
            return float(np.mean(means)) if means and not any(map(math.isnan, means)) else math.nan
        cells = [
            v for (d, _), v in block.config.units.get(metric, {}).items() if _name(d) == dataset
        ]
        return float(np.mean(cells)) if cells else math.nan

    def rows(self) -> list[tuple[str, list[float]]]:
        return [
            (d, [self.value(b, d, m) for b in self.blocks for m in self.metrics])
            for d in [*self.datasets, AVERAGE]
        ]

    def comparisons(self) -> list[Comparison]:
        """Every block after the first against the first on the last metric (HM), paired over
        shared (dataset, seed) cells, Holm-corrected together."""
        metric = self.metrics[-1]
        ref = self.blocks[0].config.units.get(metric, {})
        comps = [paired(b.config.units.get(metric, {}), ref) for b in self.blocks[1:]]
        for comp, p in zip(comps, holm([c.p for c in comps])):
            comp.p_holm = p
        return comps

    def notes(self) -> list[str]:
        metric = self.metrics[-1]
        name = metric_name(metric)
        lines = []
        for block in self.blocks:
            mean, half = mean_ci(block.config.seed_values(metric))
            ci = "" if math.isnan(half) else f" ± {half:.2f}"
            seeds = len(block.config.seed_values(metric))
            factors = _factors(block.config)
            lines.append(
                f"{block.label}{factors}: mean {name} over datasets and seeds {mean:.2f}{ci} "
                f"(95% CI over {seeds} seeds)"
            )
        for block, comp in zip(self.blocks[1:], self.comparisons()):
            if math.isnan(comp.delta):
                lines.append(f"{block.label} vs {self.blocks[0].label}: no shared cells")
                continue
            verdict = {True: "beyond", False: "within", None: "untested against"}[comp.beyond_noise]
            needed = power.fmt_needed(power.seeds_needed(comp.delta, comp.sd))
            lines.append(
                f"{block.label} vs {self.blocks[0].label}: Δ {name} {comp.delta:+.2f}"
                f"{comp.marker} over {comp.n} (dataset, seed) pairs, {verdict} seed noise "
                f"(Holm p = {comp.p_holm:.3g}); a paired test needs {needed} pairs to confirm it"
            )
        return lines

    def caption(self) -> str:
        split = self.metrics[0].split("/", 1)[0]
        hm = (
            " HM is the harmonic mean of the mean base and new accuracy; the Average row "
            "averages base and new over datasets and takes their HM, as the papers do."
            if self.base_to_new
            else ""
        )
        return f"{split} split, {self.what}; each cell is the mean over seeds.{hm}"


def paper_table(blocks: Sequence[Block], metrics: Sequence[str], what: str) -> PaperTable:
    """The table of `blocks` on `metrics`, its datasets in the order the first block met them."""
    datasets: list[str] = []
    for block in blocks:
        for metric in metrics:
            for d, _ in block.config.units.get(metric, {}):
                if _name(d) not in datasets:
                    datasets.append(_name(d))
    return PaperTable(list(blocks), list(metrics), datasets, what)


def is_suite(configs: Sequence[Config]) -> bool:
    """Whether the configurations' cells span several datasets (a suite, or a searched one)."""
    return len({_name(d) for c in configs for u in c.units.values() for d, _ in u}) > 1


def harmonic(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or a + b == 0:
        return math.nan
    return 2 * a * b / (a + b)


def to_markdown(table: PaperTable) -> str:
    names = [metric_name(m) for m in table.metrics]
    wide = len(table.blocks) > 1
    head = ["Dataset"] + [f"{b.label} {n}" if wide else n for b in table.blocks for n in names]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for dataset, values in table.rows():
        cells = [f"**{dataset}**" if dataset == AVERAGE else dataset, *map(fmt, values)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    notes = "".join(f"\n\n{line}" for line in table.notes())
    return "\n".join(lines) + "\n\n" + table.caption() + notes + "\n"


def to_latex(table: PaperTable, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}), one \\multicolumn block per column block."""
    names = [metric_name(m) for m in table.metrics]
    width = len(names)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(table.caption())}}}",
        f"\\label{{tab:{latex_escape(label)}}}",
        f"\\begin{{tabular}}{{l{'c' * width * len(table.blocks)}}}",
        "\\toprule",
    ]
    blocks = [f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(b.label)}}}" for b in table.blocks]
    lines.append(" & ".join(["", *blocks]) + " \\\\")
    rules = [
        f"\\cmidrule(lr){{{2 + i * width}-{1 + (i + 1) * width}}}" for i in range(len(table.blocks))
    ]
    lines.append(" ".join(rules))
    lines.append(" & ".join(["Dataset", *names * len(table.blocks)]) + " \\\\")
    lines.append("\\midrule")
    for dataset, values in table.rows():
        if dataset == AVERAGE:
            lines.append("\\midrule")
        cells = [latex_escape(dataset), *(fmt(v).replace("—", "--") for v in values)]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par\\footnotesize {latex_escape(n)}" for n in table.notes()]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _factors(config: Config) -> str:
    shown = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(config.factors.items())]
    return f" ({', '.join(shown)})" if shown else ""


def _name(dataset: object) -> str:
    """A unit's dataset (a tuple of the dataset columns' values) as one name."""
    if isinstance(dataset, tuple):
        return "/".join(str(d) for d in dataset)
    return "one dataset" if dataset is None else str(dataset)


def fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"
