"""Summaries and two-sample comparisons for benchmark repeats (stdlib only).

A difference counts the way mmtests counts it: the 95% confidence intervals
of the two means must not overlap and the effect must be large enough to
matter. With one sample on a side there is no interval, so nothing is
significant.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# Two-sided 95% Student-t critical values t(0.975, df) for df = 1..30;
# beyond that the normal 1.96 is within 4% and keeps the table short.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z95 = 1.96

# The smallest gain that counts, in percent: under it a difference is noise
# for our purposes even when the intervals are apart. Reports quote it from
# here (significance_rule), so the sentence and the computation agree.
MIN_EFFECT_PCT = 5.0


def t95(df: int) -> float:
    """Two-sided 95% critical value for `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    return _T95[df - 1] if df <= len(_T95) else _Z95


@dataclass(frozen=True)
class Summary:
    """n, mean, sample stdev (0 when n == 1), range and the 95% CI half-width.

    `ci95` is infinite when n == 1: one sample says nothing about spread.
    """

    n: int
    mean: float
    stdev: float
    min: float
    max: float
    ci95: float

    @property
    def rel_spread(self) -> float:
        """stdev / mean: how noisy the repeats are, independent of units."""
        if self.mean == 0:
            return 0.0 if self.stdev == 0 else math.inf
        return self.stdev / abs(self.mean)

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95


def summarize(values: Iterable[float]) -> Summary:
    """Summarize at least one value; raises ValueError on none."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("summarize() needs at least one value")
    n = len(data)
    mean = statistics.fmean(data)
    if n == 1:
        return Summary(n=1, mean=mean, stdev=0.0, min=data[0], max=data[0], ci95=math.inf)
    stdev = statistics.stdev(data)
    ci95 = t95(n - 1) * stdev / math.sqrt(n)
    return Summary(n=n, mean=mean, stdev=stdev, min=min(data), max=max(data), ci95=ci95)


@dataclass(frozen=True)
class Comparison:
    """`new` against `base`. verdict is "better", "worse" or "no change"."""

    base: Summary
    new: Summary
    gain_pct: float
    significant: bool
    verdict: str


def gain_pct(base_mean: float, new_mean: float) -> float:
    """(new / base - 1) * 100, with a zero base giving 0 or +-inf."""
    if base_mean == 0:
        return 0.0 if new_mean == 0 else math.copysign(math.inf, new_mean)
    return (new_mean / base_mean - 1.0) * 100.0


def overlaps(a: Summary, b: Summary) -> bool:
    """Whether [mean +- ci95] of `a` and `b` intersect (always, if n == 1)."""
    return a.low <= b.high and b.low <= a.high


def gain_interval(base: Summary, new: Summary) -> tuple[float, float] | None:
    """The gain's range when each mean may sit anywhere in its 95% interval.

    Conservative (it combines the two intervals' extremes); None when either
    side has one run, where there is no interval to give.
    """
    if not (math.isfinite(base.ci95) and math.isfinite(new.ci95)):
        return None
    low = gain_pct(base.high, new.low) if base.high > 0 else -math.inf
    high = gain_pct(base.low, new.high) if base.low > 0 else math.inf
    return (low, high)


def significance_rule(min_effect_pct: float = MIN_EFFECT_PCT) -> str:
    """The rule `compare` applies, in words, for reports."""
    return (
        "Significant: the 95% intervals do not overlap and the gain is at least "
        f"{min_effect_pct:g}% (one run per side is never significant)."
    )


def compare(
    base: Summary,
    new: Summary,
    min_effect_pct: float = MIN_EFFECT_PCT,
    *,
    higher_is_better: bool = True,
) -> Comparison:
    """Compare two summaries the way mmtests does.

    Significant only when both sides have n >= 2, the 95% intervals do not
    overlap, and |gain| >= `min_effect_pct`. With n == 1 on either side the
    interval is infinite, so the verdict is always "no change".
    """
    gain = gain_pct(base.mean, new.mean)
    significant = (
        base.n >= 2 and new.n >= 2 and not overlaps(base, new) and abs(gain) >= min_effect_pct
    )
    if not significant:
        verdict = "no change"
    else:
        verdict = "better" if (gain > 0) == higher_is_better else "worse"
    return Comparison(base=base, new=new, gain_pct=gain, significant=significant, verdict=verdict)
