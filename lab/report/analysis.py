"""What the results say, as values: comparison rows, per-variant verdicts,
the headline gain and the gain curves (ours and the cover letter's).

Pure functions over RunResults; every report format renders from these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lab.kernel import letter_figures
from lab.kernel.features import PARALLEL_DIRECT_WRITES
from lab.kernel.letter_figures import CoverLetterFigures, LetterWorkload
from lab.report.stats import Comparison, Summary, compare, gain_interval, gain_pct, summarize
from lab.results import SHARED_WORKLOADS, BenchSample, RunResults

MODE_ORDER = ("latency", "null")
WORKLOAD_ORDER = ("ssf", "ssf-presized", "fpj")
# The headline is the shared-file row where the patch's mechanism shows most
# directly: non-extending writes first, in latency mode, at the widest point.
HEADLINE_WORKLOADS = ("ssf-presized", "ssf")


def order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """The distinct values, `preferred` ones first in that order, then the rest sorted."""
    present = set(values)
    return [v for v in preferred if v in present] + sorted(present - set(preferred))


def figures_of(results: RunResults) -> CoverLetterFigures | None:
    """The series' cover-letter figures the run recorded (none: no "original" anywhere)."""
    return letter_figures.recorded(results.inputs)


def mean(values: Iterable[float]) -> float | None:
    data = list(values)
    return sum(data) / len(data) if data else None


# --------------------------------------------------------------------------
# Comparison rows


@dataclass(frozen=True)
class Row:
    """One (mode, workload, numjobs) line of the comparison; bandwidth in MiB/s.

    A side without samples is None. Ideal speedups are given in latency mode
    only, where the server's delay makes throughput proportional to the
    number of WRITEs in flight.
    """

    mode: str
    workload: str
    numjobs: int
    base: Summary | None
    new: Summary | None
    comparison: Comparison | None
    inflight_base: float | None
    inflight_new: float | None
    ideal_speedup_base: float | None
    ideal_speedup_new: float | None
    speedup_base: float | None
    speedup_new: float | None
    original_gain_pct: float | None

    @property
    def gain_pct(self) -> float | None:
        return self.comparison.gain_pct if self.comparison else None

    @property
    def verdict(self) -> str:
        return self.comparison.verdict if self.comparison else "n/a"

    @property
    def gain_interval(self) -> tuple[float, float] | None:
        return gain_interval(self.base, self.new) if self.base and self.new else None


def _ideal(results: RunResults, variant: str, workload: str, numjobs: int, is_new: bool) -> float:
    """Speedup over 1 job if WRITEs overlapped perfectly under the server delay.

    fpj gives each job its own inode (and lock). A shared file scales only
    when the kernel allows parallel direct writes; a variant without a
    "features" list is assumed to be the unpatched base or the patched new.
    """
    if workload not in SHARED_WORKLOADS:
        return float(numjobs)
    claimed = results.features(variant)
    parallel = is_new if claimed is None else PARALLEL_DIRECT_WRITES in claimed
    return float(numjobs) if parallel else 1.0


def comparison_table(
    results: RunResults, base: str = "baseline", new: str = "patched"
) -> list[Row]:
    """Rows ordered by mode, workload and numjobs, for every combination measured."""
    figures = figures_of(results)
    groups: dict[tuple[str, str, int, str], list[BenchSample]] = defaultdict(list)
    for s in results.samples:
        groups[(s.mode, s.workload, s.numjobs, s.variant)].append(s)

    def summary(mode: str, workload: str, numjobs: int, variant: str) -> Summary | None:
        samples = groups.get((mode, workload, numjobs, variant))
        return summarize(s.bw_mib for s in samples) if samples else None

    def inflight(mode: str, workload: str, numjobs: int, variant: str) -> float | None:
        return mean(s.max_inflight for s in groups.get((mode, workload, numjobs, variant), ()))

    def speedup(mode: str, workload: str, numjobs: int, variant: str) -> float | None:
        here, one = summary(mode, workload, numjobs, variant), summary(mode, workload, 1, variant)
        if here is None or one is None or one.mean == 0:
            return None
        return here.mean / one.mean

    rows = []
    for mode in order((s.mode for s in results.samples), MODE_ORDER):
        in_mode = [s for s in results.samples if s.mode == mode]
        for workload in order((s.workload for s in in_mode), WORKLOAD_ORDER):
            jobs = sorted({s.numjobs for s in in_mode if s.workload == workload})
            for n in jobs:
                b, w = summary(mode, workload, n, base), summary(mode, workload, n, new)
                latency = mode == "latency"
                rows.append(
                    Row(
                        mode=mode,
                        workload=workload,
                        numjobs=n,
                        base=b,
                        new=w,
                        comparison=compare(b, w) if b and w else None,
                        inflight_base=inflight(mode, workload, n, base),
                        inflight_new=inflight(mode, workload, n, new),
                        ideal_speedup_base=(
                            _ideal(results, base, workload, n, False) if latency else None
                        ),
                        ideal_speedup_new=(
                            _ideal(results, new, workload, n, True) if latency else None
                        ),
                        speedup_base=speedup(mode, workload, n, base),
                        speedup_new=speedup(mode, workload, n, new),
                        original_gain_pct=(figures.stated_gain_pct(workload, n)
                                           if figures else None),
                    )
                )
    return rows


def headline(rows: Sequence[Row]) -> Row | None:
    """The one row a reader asks about first (see HEADLINE_WORKLOADS); None if none compares."""
    compared = [r for r in rows if r.comparison]
    if not compared:
        return None

    def rank(r: Row) -> tuple[int, int, int]:
        mode = MODE_ORDER.index(r.mode) if r.mode in MODE_ORDER else len(MODE_ORDER)
        work = (HEADLINE_WORKLOADS.index(r.workload) if r.workload in HEADLINE_WORKLOADS
                else len(HEADLINE_WORKLOADS))  # fmt: skip
        return (mode, work, -r.numjobs)

    return min(compared, key=rank)


# --------------------------------------------------------------------------
# Verdicts on the suite


@dataclass(frozen=True)
class KernelFailureInCase:
    """A check the kernel itself failed: it crashed or hung (CheckResult.kernel).

    `summary` is one line; `evidence` the console text behind it (the check's
    console excerpt, else the evidence of CheckResult.kernel).
    """

    case: str
    variant: str
    kind: str
    summary: str
    evidence: str


@dataclass(frozen=True)
class VariantVerdict:
    """Whether a variant's kernel behaved as its claims (features) predict."""

    variant: str
    features: tuple[str, ...] | None  # None: the results do not say
    checks: int
    passed: int
    failed: tuple[str, ...]  # names of the cases that contradict the claims
    kernel_failures: tuple[KernelFailureInCase, ...]

    @property
    def status(self) -> str:
        if not self.checks:
            return "not checked"
        return "contradicted" if self.failed else "held"


def verdicts(results: RunResults, names: Sequence[str] = ()) -> list[VariantVerdict]:
    """One verdict per variant (those in `names`, the results' variants and any checked)."""
    variants = list(dict.fromkeys([*names, *results.variants,
                                   *(c.variant for c in results.checks)]))  # fmt: skip
    out = []
    for v in variants:
        checks = [c for c in results.checks if c.variant == v]
        crashes = []
        for c in checks:
            if c.kernel is not None:
                evidence = c.console_excerpt or c.kernel.evidence
                summary = c.kernel.summary or next(
                    (line.strip() for line in evidence.splitlines() if line.strip()), c.observed)
                crashes.append(KernelFailureInCase(c.name, v, c.kernel.kind, summary, evidence))
        features = results.variants.get(v, {}).get("features")
        out.append(VariantVerdict(
            variant=v,
            features=tuple(features) if features is not None else None,
            checks=len(checks),
            passed=sum(c.passed for c in checks),
            failed=tuple(dict.fromkeys(c.name for c in checks if not c.passed)),
            kernel_failures=tuple(crashes),
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------
# Gain curves


@dataclass(frozen=True)
class GainPoint:
    numjobs: int
    gain_pct: float
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class GainCurve:
    label: str
    source: str  # "ours", "stated" (the cover letter's words), "raw" (its bandwidths)
    points: tuple[GainPoint, ...]


def original_raw_gain_pct(workload: LetterWorkload) -> dict[int, float]:
    """The cover letter's gains for its `workload` recomputed from its own raw bandwidths."""
    base, new = workload.unpatched_mib, workload.patched_mib
    return {n: gain_pct(base[n], new[n]) for n in sorted(base) if n in new}


def gain_curves(rows: Sequence[Row], mode: str,
                figures: CoverLetterFigures | None = None) -> list[GainCurve]:
    """Our gain per workload in `mode`, then the cover letter's (from `figures`):
    as it states them where it states a gain, and from its raw bandwidths;
    measured once, on its own machine."""
    curves = []
    in_mode = [r for r in rows if r.mode == mode and r.comparison]
    for workload in order((r.workload for r in in_mode), WORKLOAD_ORDER):
        points = tuple(GainPoint(r.numjobs, r.comparison.gain_pct, r.gain_interval)
                       for r in in_mode if r.workload == workload and r.comparison)  # fmt: skip
        curves.append(GainCurve(f"ours: {workload}", "ours", points))
    if figures is None:
        return curves
    for w in figures.workloads:
        if not w.unchanged:
            curves.append(GainCurve(f"cover letter: {w.name}, stated", "stated",
                                    tuple(GainPoint(n, g)
                                          for n, g in sorted(w.stated_gain_pct.items()))))
    for w in figures.workloads:
        raw = original_raw_gain_pct(w)
        curves.append(GainCurve(f"cover letter: {w.name}, from its raw numbers", "raw",
                                tuple(GainPoint(n, g) for n, g in raw.items())))
    return curves
