"""The papers' table of a suite (issue 17, item 2): per dataset base / new / HM and the average,
HM of the means as the papers compute it, and studies side by side with paired tests."""

from __future__ import annotations

import math

import pytest

from ablate.report import paper
from ablate.report.analysis import Config

METRICS = ["test/base", "test/new", "test/hm"]


def config(base: dict[tuple[str, int], float], new: dict[tuple[str, int], float]) -> Config:
    units = {"test/base": {((d,), s): v for (d, s), v in base.items()}}
    units["test/new"] = {((d,), s): v for (d, s), v in new.items()}
    units["test/hm"] = {((d,), s): paper.harmonic(base[d, s], new[d, s]) for d, s in base}
    return Config({"method.prompt_length": 2}, units=units)


A = config(
    {("a", 1): 80, ("a", 2): 82, ("b", 1): 60, ("b", 2): 64},
    {("a", 1): 70, ("a", 2): 72, ("b", 1): 40, ("b", 2): 44},
)
B = config(  # A plus 1 point everywhere, with a little seed noise
    {("a", 1): 81, ("a", 2): 83.2, ("b", 1): 61, ("b", 2): 64.8},
    {("a", 1): 71, ("a", 2): 73.1, ("b", 1): 41, ("b", 2): 44.9},
)


def test_cells_are_seed_means_and_hm_is_the_hm_of_the_means():
    table = paper.paper_table([paper.Block("A", A)], METRICS, "one study")
    rows = dict(table.rows())
    assert rows["a"] == pytest.approx([81, 71, 2 * 81 * 71 / 152])
    assert rows["b"] == pytest.approx([62, 42, 2 * 62 * 42 / 104])
    # the average of base and new over datasets, and the HM of those two averages
    assert rows[paper.AVERAGE] == pytest.approx([71.5, 56.5, 2 * 71.5 * 56.5 / 128])
    assert table.datasets == ["a", "b"]


def test_studies_side_by_side_with_a_paired_test_against_the_first():
    table = paper.paper_table([paper.Block("A", A), paper.Block("B", B)], METRICS, "two")
    [comp] = table.comparisons()
    assert comp.n == 4 and 0.5 < comp.delta < 1.5
    assert comp.beyond_noise is True
    markdown = paper.to_markdown(table)
    assert markdown.splitlines()[0].startswith("| Dataset | A Base | A New | A HM | B Base |")
    assert "B vs A: Δ HM +" in markdown and "pairs to confirm it" in markdown
    latex = paper.to_latex(table, "cmp")
    assert "\\multicolumn{3}{c}{A} & \\multicolumn{3}{c}{B}" in latex
    assert "\\cmidrule(lr){2-4} \\cmidrule(lr){5-7}" in latex
    assert latex.count("\\\\") == 2 + 3  # two header lines, two datasets and the average


def test_a_dataset_missing_from_a_block_leaves_its_cells_empty():
    partial = config({("a", 1): 80}, {("a", 1): 70})
    table = paper.paper_table([paper.Block("A", A), paper.Block("P", partial)], METRICS, "x")
    rows = dict(table.rows())
    assert math.isnan(rows["b"][3]) and math.isnan(rows[paper.AVERAGE][3])
    assert "—" in paper.to_markdown(table)


def test_a_suite_is_recognised_by_its_units():
    assert paper.is_suite([A])
    assert not paper.is_suite([config({("a", 1): 80}, {("a", 1): 70})])
