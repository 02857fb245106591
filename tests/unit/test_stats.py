"""Summaries, intervals and the mmtests-style significance rule."""

from __future__ import annotations

import math
import statistics

import pytest

from lab.report.stats import compare, summarize, t95


def test_summary_of_known_values():
    s = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.mean == 5.0
    assert s.stdev == pytest.approx(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]))
    assert (s.min, s.max) == (2.0, 9.0)
    assert s.ci95 == pytest.approx(2.365 * s.stdev / math.sqrt(8))
    assert s.rel_spread == pytest.approx(s.stdev / 5.0)


def test_single_value_has_no_interval():
    s = summarize([3.5])
    assert (s.n, s.mean, s.stdev, s.min, s.max) == (1, 3.5, 0.0, 3.5, 3.5)
    assert math.isinf(s.ci95)
    assert s.rel_spread == 0.0


def test_t_table_edges():
    assert t95(1) == 12.706
    assert t95(30) == 2.042
    assert t95(31) == 1.96
    with pytest.raises(ValueError):
        t95(0)
    with pytest.raises(ValueError):
        summarize([])


def test_clearly_separated_is_significant():
    base = summarize([100, 101, 99, 100, 100])
    new = summarize([200, 202, 198, 201, 199])
    c = compare(base, new)
    assert c.gain_pct == pytest.approx(100.0)
    assert c.significant and c.verdict == "better"
    worse = compare(new, base)
    assert worse.significant and worse.verdict == "worse"
    assert worse.gain_pct == pytest.approx(-50.0)


def test_overlapping_is_not_significant():
    base = summarize([100, 120, 80, 110, 90])
    new = summarize([105, 125, 85, 115, 95])
    c = compare(base, new)
    assert c.gain_pct == pytest.approx(5.0)
    assert not c.significant and c.verdict == "no change"


def test_small_effect_is_not_significant_even_if_separated():
    base = summarize([100.0, 100.1, 99.9])
    new = summarize([102.0, 102.1, 101.9])
    c = compare(base, new)
    assert c.new.low > c.base.high  # intervals apart ...
    assert not c.significant  # ... but +2% is under the 5% threshold
    assert compare(base, new, min_effect_pct=1.0).significant


def test_one_run_is_never_significant():
    c = compare(summarize([100.0]), summarize([1000.0, 1001.0, 999.0]))
    assert c.gain_pct == pytest.approx(900.0)
    assert not c.significant and c.verdict == "no change"


def test_lower_is_better_flips_the_verdict():
    base = summarize([10, 10.1, 9.9])
    new = summarize([5, 5.1, 4.9])
    assert compare(base, new, higher_is_better=False).verdict == "better"


def test_zero_base():
    c = compare(summarize([0.0, 0.0]), summarize([0.0, 0.0]))
    assert c.gain_pct == 0.0 and not c.significant
