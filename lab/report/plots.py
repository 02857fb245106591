"""Plots (matplotlib, PNG and SVG): bandwidth vs jobs per (mode, workload), and
the gain vs jobs per mode beside the cover letter's curves.

Figure names are pure functions (`bandwidth_name`, `gain_name`), so report
sections can place a figure next to its table without drawing anything.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.kernel.letter_figures import CoverLetterFigures
from lab.report.analysis import MODE_ORDER, WORKLOAD_ORDER, Row, gain_curves, order
from lab.report.stats import summarize
from lab.results import RunResults

# Ours in colour, the cover letter in greys: stated dashed, recomputed dotted.
_STYLE = {
    "stated": {"color": "black", "linestyle": "--", "marker": "s"},
    "raw": {"color": "grey", "linestyle": ":", "marker": "^"},
}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def bandwidth_name(mode: str, workload: str) -> str:
    return f"{slug(mode)}-{slug(workload)}"


def gain_name(mode: str) -> str:
    return f"gain-{slug(mode)}"


@contextmanager
def _figure(height: float = 4.0) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg")  # no display in CI or over SSH
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, height))
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def _jobs_axis(ax: Any, ticks: Sequence[int]) -> None:
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.set_xlabel("fio jobs")
    ax.grid(True, alpha=0.3)


def _save(fig: Any, stem: Path) -> list[Path]:
    fig.tight_layout()
    paths = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def render_plots(
    results: RunResults, outdir: Path, base: str = "baseline", new: str = "patched",
    *, ideal: bool = True,
) -> list[Path]:
    """Bandwidth vs jobs per (mode, workload), one line per variant; PNG and SVG.

    Error bars are the 95% CI (none when a point has one run). In latency
    mode (with `ideal`) a dashed line shows ideal scaling from `new`'s 1-job
    bandwidth.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    by: dict[tuple[str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for s in results.samples:
        by[(s.mode, s.workload)][s.variant][s.numjobs].append(s.bw_mib)

    paths: list[Path] = []
    for mode in order((m for m, _ in by), MODE_ORDER):
        for workload in order((w for m, w in by if m == mode), WORKLOAD_ORDER):
            variants = by[(mode, workload)]
            xs_all = sorted({n for per_variant in variants.values() for n in per_variant})
            with _figure() as (fig, ax):
                one = variants.get(new, {}).get(1)
                if ideal and mode == "latency" and one:
                    m1 = summarize(one).mean
                    ax.plot(xs_all, [m1 * n for n in xs_all], "--", color="grey",
                            label="ideal scaling")  # fmt: skip
                for variant in order(variants, (base, new)):
                    points = sorted(variants[variant].items())
                    stats = [summarize(v) for _, v in points]
                    errs = [s.ci95 if math.isfinite(s.ci95) else 0.0 for s in stats]
                    ax.errorbar([n for n, _ in points], [s.mean for s in stats], yerr=errs,
                                marker="o", capsize=3, label=variant)  # fmt: skip
                _jobs_axis(ax, xs_all)
                ax.set_ylim(bottom=0)
                ax.set_ylabel("bandwidth (MiB/s)")
                ax.set_title(f"{workload}, {mode} mode")
                ax.legend()
                paths += _save(fig, outdir / bandwidth_name(mode, workload))
    return paths


def render_gain_plots(
    rows: Sequence[Row], outdir: Path, base: str = "baseline", new: str = "patched",
    *, figures: CoverLetterFigures | None = None,
) -> list[Path]:
    """Gain of `new` over `base` vs jobs, one figure per mode; PNG and SVG.

    Our curves carry the gain's 95% range as error bars (none with one run
    per side). Given the series' cover-letter `figures`, its gains as stated
    and as its own raw bandwidths give them are drawn too.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for mode in order((r.mode for r in rows if r.comparison), MODE_ORDER):
        curves = gain_curves(rows, mode, figures)
        ticks = sorted({p.numjobs for c in curves for p in c.points})
        with _figure(height=5.2) as (fig, ax):
            ax.axhline(0, color="black", linewidth=0.8)
            for c in curves:
                xs = [p.numjobs for p in c.points]
                ys = [p.gain_pct for p in c.points]
                if c.source == "ours":
                    lows = [max(p.gain_pct - p.interval[0], 0.0)
                            if p.interval and math.isfinite(p.interval[0]) else 0.0
                            for p in c.points]  # fmt: skip
                    highs = [max(p.interval[1] - p.gain_pct, 0.0)
                             if p.interval and math.isfinite(p.interval[1]) else 0.0
                             for p in c.points]  # fmt: skip
                    ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3,
                                linewidth=2, label=c.label)  # fmt: skip
                else:
                    style = dict(_STYLE[c.source])
                    if "fpj" in c.label:
                        style["color"] = "lightgrey"
                    ax.plot(xs, ys, label=c.label, **style)
            _jobs_axis(ax, ticks)
            ax.set_ylabel(f"gain of {new} over {base} (%)")
            ax.set_title(f"Gain vs jobs, {mode} mode")
            # Below the axes: inside, it would hide the steep end of the curves.
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
            paths += _save(fig, outdir / gain_name(mode))
    return paths
