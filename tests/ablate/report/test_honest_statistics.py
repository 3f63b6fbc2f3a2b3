"""Honest statistics beside each Δ (issue 17, item 4): beyond seed noise or not, seed SD against
the spread between configurations, the few-seeds warning, and the seeds a paired test needs."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from ablate import report
from ablate.report import power, tables
from ablate.report.analysis import paired_power
from tests.ablate.report.test_report import ablation_rows, write_study


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> report.Analysis:
    rows = ablation_rows(np.random.default_rng(0))
    return report.analyse(
        report.StudyInfo("abl", write_study(tmp_path_factory.mktemp("a") / "abl", rows))
    )


@pytest.mark.parametrize(("d", "n"), [(1.0, 10), (0.5, 34), (0.8, 15)])
def test_seeds_needed_matches_published_paired_t_sample_sizes(d, n):
    """Two-sided paired t-test, alpha 0.05, power 0.8 (Cohen 1988 / G*Power values)."""
    assert power.seeds_needed(d, 1.0) == n
    assert power.seeds_needed(-3 * d, 3.0) == n  # only |Δ| / SD matters
    assert paired_power(d, n) >= 0.8 > paired_power(d, n - 1)


def test_power_agrees_with_a_simulated_paired_t_test():
    rng = np.random.default_rng(0)
    from scipy import stats

    diffs = rng.normal(1.0, 1.0, size=(20000, 10))
    rejected = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert float(rejected.mean()) == pytest.approx(paired_power(1.0, 10), abs=0.015)


def test_seeds_needed_edge_cases():
    assert math.isinf(power.seeds_needed(0.0, 1.0))
    assert math.isinf(power.seeds_needed(0.001, 1.0))  # past MAX_SEEDS
    assert math.isnan(power.seeds_needed(1.0, math.nan))
    assert power.fmt_needed(math.inf) == ">1000" and power.fmt_needed(math.nan) == "—"


def test_seed_sd_against_between_configuration_sd_on_known_numbers():
    samples = [[1.0, 3.0], [10.0, 12.0, 14.0]]  # variances 2 (df 1) and 4 (df 2): pooled 10/3
    assert power.seed_sd(samples) == pytest.approx(math.sqrt(10 / 3))
    assert power.between_sd([2.0, 12.0]) == pytest.approx(math.sqrt(50))
    line = power.noise_line(samples, "HM")
    assert line == "HM: seed SD 1.83 vs between-configuration SD 7.07"
    assert "most differences are noise" in power.noise_line([[0.0, 4.0], [1.0, 5.0]], "HM")


def test_few_seeds_warning():
    assert "2 seed(s)" in power.few_seeds_warning(2) and "9.0 seed SDs" in power.few_seeds_warning(
        2
    )
    assert power.few_seeds_warning(1).startswith("Warning")
    assert power.few_seeds_warning(3) == ""


def test_each_delta_says_whether_it_exceeds_seed_noise_and_how_many_seeds_it_needs(ablation):
    table = ablation.table
    md = tables.to_markdown(table)
    by_label = {row[0]: row for row in tables.body_rows(table)}
    hm = tables.header_cells(table).index("Δ HM")
    assert by_label["shallow"][hm].endswith("(within noise)")  # +0.1 against noise of 0.3
    assert by_label["short-prompt"][hm].endswith("**")
    assert "seed SD" in md and "between-configuration SD" in md and "Warning" not in md
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(table))))
    base = next(c for c in table.configs if c.label == "base")
    for row, config in zip(rows[1:], table.configs[1:], strict=True):
        diffs = np.subtract(config.seed_values("test/hm"), base.seed_values("test/hm"))
        sd = float(np.std(diffs, ddof=1))  # independent of analysis.paired
        assert float(row["test/hm:sd_diff"]) == pytest.approx(sd)
        assert float(row["test/hm:seeds_needed"]) == power.seeds_needed(float(diffs.mean()), sd)
        assert row["test/hm:beyond_noise"] == str(float(row["test/hm:p_holm"]) < 0.05).lower()
    assert "\\mathrm{n.s.}" in tables.to_latex(table, "abl")


def test_two_seeds_print_the_warning_in_every_table(tmp_path):
    rows = [r for r in ablation_rows(np.random.default_rng(1)) if r["seed"] <= 2]
    data = report.analyse(report.StudyInfo("two", write_study(tmp_path / "two", rows)))
    assert "carry no information" in tables.to_markdown(data.table)
    assert "carry no information" in tables.to_latex(data.table, "two")
