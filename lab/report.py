"""Turn RunResults into results.json, Markdown, HTML, JUnit XML and plots.

Markdown and HTML are rendered from the same `Section`/`Table` values, so
the two never disagree. Apart from `render_plots` and `write_report`,
everything here is pure.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.results import (
    ORIGINAL_BW_MIB,
    ORIGINAL_GAIN_PCT,
    SHARED_WORKLOADS,
    BenchSample,
    CheckResult,
    RunResults,
    original_gain_pct,
)
from lab.stats import Comparison, Summary, compare, gain_pct, summarize

MIB = 1 << 20
MODE_ORDER = ("latency", "null")
WORKLOAD_ORDER = ("ssf", "ssf-presized", "fpj")
DASH = "—"


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


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    present = set(values)
    return [v for v in preferred if v in present] + sorted(present - set(preferred))


def _mean(values: Iterable[float]) -> float | None:
    data = list(values)
    return sum(data) / len(data) if data else None


def _ideal(results: RunResults, variant: str, workload: str, numjobs: int, is_new: bool) -> float:
    """Speedup over 1 job if WRITEs overlapped perfectly under the server delay.

    fpj gives each job its own inode (and lock). A shared file scales only
    when the kernel allows parallel direct writes; a variant without a
    "features" list is assumed to be the unpatched base or the patched new.
    """
    if workload not in SHARED_WORKLOADS:
        return float(numjobs)
    parallel = results.has_parallel_writes(variant)
    if parallel is None:
        parallel = is_new
    return float(numjobs) if parallel else 1.0


def comparison_table(
    results: RunResults, base: str = "baseline", new: str = "patched"
) -> list[Row]:
    """Rows ordered by mode, workload and numjobs, for every combination measured."""
    groups: dict[tuple[str, str, int, str], list[BenchSample]] = defaultdict(list)
    for s in results.samples:
        groups[(s.mode, s.workload, s.numjobs, s.variant)].append(s)

    def summary(mode: str, workload: str, numjobs: int, variant: str) -> Summary | None:
        samples = groups.get((mode, workload, numjobs, variant))
        return summarize(s.bw_mib for s in samples) if samples else None

    def inflight(mode: str, workload: str, numjobs: int, variant: str) -> float | None:
        return _mean(s.max_inflight for s in groups.get((mode, workload, numjobs, variant), ()))

    def speedup(mode: str, workload: str, numjobs: int, variant: str) -> float | None:
        here, one = summary(mode, workload, numjobs, variant), summary(mode, workload, 1, variant)
        if here is None or one is None or one.mean == 0:
            return None
        return here.mean / one.mean

    rows = []
    for mode in _order((s.mode for s in results.samples), MODE_ORDER):
        in_mode = [s for s in results.samples if s.mode == mode]
        for workload in _order((s.workload for s in in_mode), WORKLOAD_ORDER):
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
                        original_gain_pct=original_gain_pct(workload, n),
                    )
                )
    return rows


# --------------------------------------------------------------------------
# Document model shared by Markdown and HTML


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Block:
    """A titled chunk: paragraphs, bullets, tables and preformatted text."""

    title: str
    level: int = 2
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    pre: tuple[str, ...] = field(default=())


# Console excerpts carry ANSI colour codes, CRs and the odd NUL byte.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _printable(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("\ufffd", text)


def _pct(value: float | None) -> str:
    if value is None:
        return DASH
    if math.isinf(value):
        return "+inf%" if value > 0 else "-inf%"
    return f"{value:+.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}f}"


def _stated(value: float | None) -> str:
    """A cover-letter percentage as printed there (+630.33%, +42%)."""
    return DASH if value is None else f"{value:+g}%"


def _bw(s: Summary | None) -> str:
    if s is None:
        return DASH
    if s.n == 1:
        return f"{s.mean:.1f} (n=1)"
    return f"{s.mean:.1f} (±{s.ci95:.1f}, n={s.n})"


def _speed(measured: float | None, ideal: float | None) -> str:
    text = DASH if measured is None else f"{measured:.2f}x"
    return text if ideal is None else f"{text} (ideal {_num(ideal)}x)"


def _mode_title(mode: str) -> str:
    what = {
        "latency": "the server holds each WRITE, so throughput counts WRITEs in flight",
        "null": "the server acknowledges WRITEs without copying data",
    }.get(mode)
    return f"Mode: {mode}" + (f" ({what})" if what else "")


def _comparison_block(mode: str, rows: list[Row], base: str, new: str) -> Block:
    headers = (
        "workload",
        "jobs",
        f"{base} MiB/s (±ci95, n)",
        f"{new} MiB/s (±ci95, n)",
        "gain",
        "significant",
        "WRITEs in flight b/p",
        "original gain",
    )
    main = tuple(
        (
            r.workload,
            str(r.numjobs),
            _bw(r.base),
            _bw(r.new),
            _pct(r.gain_pct),
            f"yes ({r.verdict})" if r.comparison and r.comparison.significant else "no",
            f"{_num(r.inflight_base)} / {_num(r.inflight_new)}",
            _stated(r.original_gain_pct),
        )
        for r in rows
    )
    scaling = tuple(
        (
            r.workload,
            str(r.numjobs),
            _speed(r.speedup_base, r.ideal_speedup_base),
            _speed(r.speedup_new, r.ideal_speedup_new),
        )
        for r in rows
    )
    scale_headers = ("workload", "jobs", f"{base} vs 1 job", f"{new} vs 1 job")
    return Block(
        title=_mode_title(mode),
        paragraphs=(
            "Significant: the 95% intervals do not overlap and the gain is at least 5% "
            "(one run per side is never significant). Original gain: the cover letter's "
            "stated SSF gain (ssf-presized is compared with ssf; fpj was reported unchanged).",
        ),
        tables=(Table(headers, main),)
        + (
            (Table(scale_headers, scaling),)
            if any(r.speedup_base or r.speedup_new for r in rows)
            else ()
        ),
    )


def _explanation(results: RunResults, rows: list[Row], base: str, new: str) -> list[str]:
    """Sentences that read the tables for the reader, from the data only."""
    out: list[str] = []
    latency = [r for r in rows if r.mode == "latency"]
    delays = sorted({s.write_delay_us for s in results.samples if s.mode == "latency"})
    for workload in _order((r.workload for r in latency), WORKLOAD_ORDER):
        mine = [r for r in latency if r.workload == workload and r.speedup_new is not None]
        if not mine:
            continue
        top = max(mine, key=lambda r: r.numjobs)
        text = (
            f"Latency mode, {workload}: {new} reaches {top.speedup_new:.2f}x its 1-job "
            f"bandwidth at {top.numjobs} jobs (ideal {_num(top.ideal_speedup_new)}x)"
        )
        if top.speedup_base is not None:
            text += f", {base} {top.speedup_base:.2f}x (ideal {_num(top.ideal_speedup_base)}x)"
        text += "."
        if workload in SHARED_WORKLOADS and top.speedup_base is not None:
            if top.speedup_base < 1.5:
                text += (
                    f" {base} stays near 1x because every direct write to the shared file "
                    "takes the exclusive inode lock, so WRITEs reach the server one at a time"
                )
            else:
                text += f" {base} scaling beyond 1x on a shared file is unexpected"
            text += (
                f" (at most {_num(top.inflight_base)} in flight vs {_num(top.inflight_new)} "
                f"for {new})."
            )
        out.append(text)
    if latency and delays:
        us = ", ".join(str(d) for d in delays)
        out.append(f"In latency mode the server delayed each WRITE by {us} µs.")
    if any(r.mode == "null" for r in rows):
        vcpus = results.inputs.get("vcpus")
        cpus = f"with {vcpus} vCPUs " if vcpus else ""
        out.append(
            "Null mode: the server drops the data, so a WRITE costs only CPU time; "
            f"{cpus}the fio jobs, the kernel and the server threads compete for the same "
            "CPUs, so letting WRITEs run in parallel cannot add much throughput. Differences "
            "here reflect locking and scheduling overhead more than concurrency."
        )
        null = [r for r in rows if r.mode == "null" and r.comparison]
        for workload in _order((r.workload for r in null), WORKLOAD_ORDER):
            top = max((r for r in null if r.workload == workload), key=lambda r: r.numjobs)
            out.append(
                f"Null mode, {workload} at {top.numjobs} jobs: {new} {_pct(top.gain_pct)} "
                f"vs {base} ({top.verdict})."
            )
    workloads = {r.workload for r in rows}
    if "ssf" in workloads:
        text = (
            "ssf starts with an empty file (fio fallocate=none), so its first writes extend "
            "it; extending writes take the exclusive inode lock even on a patched kernel, "
            "which limits ssf's parallelism. ssf-presized pre-sizes the file with truncate "
            "so that every write is non-extending."
        )
        ext = {
            w: _mean(s.extending_writes for s in results.samples
                     if s.workload == w and s.variant == new)
            for w in ("ssf", "ssf-presized")
        }  # fmt: skip
        if ext["ssf"] is not None:
            text += f" Extending WRITEs per {new} run: ssf {_num(ext['ssf'])}"
            if ext["ssf-presized"] is not None:
                text += f", ssf-presized {_num(ext['ssf-presized'])}"
            text += "."
        out.append(text)
    significant = [r for r in rows if r.comparison and r.comparison.significant]
    better = sum(r.verdict == "better" for r in significant)
    out.append(
        f"{len(significant)} of {len(rows)} rows differ significantly "
        f"({better} better, {len(significant) - better} worse for {new})."
    )
    out.append(
        "The cover letter measured on bare metal with the passthrough server's backing "
        f"writes disabled: SSF gains of {_stated(ORIGINAL_GAIN_PCT['ssf'][16])} at 16 jobs and "
        f"{_stated(ORIGINAL_GAIN_PCT['ssf'][32])} at 32, file-per-job unchanged. In a small VM "
        "absolute numbers are far lower; the shape of the scaling is what compares."
    )
    return out


def _original_block() -> Block:
    rows = []
    for workload in ("ssf", "fpj"):
        for n, b in ORIGINAL_BW_MIB["baseline"][workload].items():
            p = ORIGINAL_BW_MIB["patched"][workload][n]
            rows.append(
                (workload, str(n), f"{b:.0f}", f"{p:.0f}", _pct(gain_pct(b, p)),
                 _stated(ORIGINAL_GAIN_PCT[workload].get(n)))
            )  # fmt: skip
    return Block(
        title="Cover letter figures (bare metal, 2022)",
        paragraphs=(
            "Raw WRITE bandwidths from the FOPEN_PARALLEL_DIRECT_WRITES cover letter. Its "
            "stated SSF gains for 1-8 jobs do not follow from its own raw numbers; both are "
            "shown.",
        ),
        tables=(
            Table(
                ("workload", "jobs", "unpatched MiB/s", "patched MiB/s", "gain from raw",
                 "stated gain"),
                tuple(rows),
            ),
        ),
    )  # fmt: skip


def _checks_block(checks: Sequence[CheckResult]) -> Block:
    variants = _order((c.variant for c in checks), ("baseline", "patched"))
    names = list(dict.fromkeys(c.name for c in checks))
    cell = {c.key: f"{'PASS' if c.passed else 'FAIL'}: {c.observed}" for c in checks}
    rows = tuple((name, *(cell.get((name, v), DASH) for v in variants)) for name in names)
    failed = [c for c in checks if not c.passed]
    pre = tuple(
        _printable(
            f"FAIL {c.name} on {c.variant}\nexpected: {c.expected}\nobserved: {c.observed}"
            + (f"\n--- console ---\n{c.console_excerpt.rstrip()}" if c.console_excerpt else "")
        )
        for c in failed
    )
    passed = sum(c.passed for c in checks)
    return Block(
        title="Checks",
        paragraphs=(f"{passed} of {len(checks)} checks passed.",),
        tables=(Table(("check", *variants), rows),),
        pre=pre,
    )


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _blocks(results: RunResults, base: str, new: str) -> list[Block]:
    rows = comparison_table(results, base, new)
    blocks = [
        Block(
            title="Inputs",
            bullets=(
                f"run: {results.run_id}",
                f"created: {results.created}",
                f"accelerator: {results.accel or 'unknown'}",
                *(f"{k}: {_value(v)}" for k, v in results.inputs.items()),
            ),
        )
    ]
    if results.variants:
        vrows = tuple(
            (
                name,
                str(info.get("kernel_release", DASH)),
                ", ".join(info.get("features") or ()) or DASH,
                str(info.get("bzimage_sha256", DASH))[:16],
            )
            for name, info in results.variants.items()
        )
        blocks.append(
            Block("Variants", tables=(Table(("variant", "kernel", "features", "bzImage"), vrows),))
        )
    if rows:
        blocks.append(
            Block("Explanation", paragraphs=tuple(_explanation(results, rows, base, new)))
        )
        for mode in _order((r.mode for r in rows), MODE_ORDER):
            blocks.append(_comparison_block(mode, [r for r in rows if r.mode == mode], base, new))
        blocks.append(_original_block())
    if results.checks:
        blocks.append(_checks_block(results.checks))
    if results.notes:
        blocks.append(Block("Notes", bullets=results.notes))
    return blocks


# --------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    # Keep table cells on one line and stop stray HTML from rendering.
    text = _printable(text).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("<", "&lt;").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in t.headers) + " |"]
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
    return lines


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    mark = "`" * (longest + 1)
    return f"{mark}\n{text}\n{mark}"


def render_markdown(
    results: RunResults,
    base: str = "baseline",
    new: str = "patched",
    plot_links: Sequence[str] = (),
) -> str:
    """The report as GitHub-flavoured Markdown; `plot_links` are image paths to embed."""
    out = [f"# kernel-lab report: {_md(results.run_id)}", ""]
    for block in _blocks(results, base, new):
        out += ["#" * block.level + " " + _md(block.title), ""]
        for p in block.paragraphs:
            out += [_md(p), ""]
        if block.bullets:
            out += [f"- {_md(b)}" for b in block.bullets] + [""]
        for t in block.tables:
            out += _md_table(t) + [""]
        for text in block.pre:
            out += [_fence(text), ""]
    if plot_links:
        out += ["## Plots", ""]
        out += [f"![{_md(Path(link).stem)}]({link})" for link in plot_links] + [""]
    return "\n".join(out)


# --------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; font-size: 0.8rem; }
figure { display: inline-block; margin: 0.5rem; }
img { max-width: 36rem; }
"""


def _html_table(t: Table) -> str:
    def esc(text: str) -> str:
        return html.escape(_printable(text))

    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    results: RunResults, plots: Sequence[Path] = (), base: str = "baseline", new: str = "patched"
) -> str:
    """A self-contained page: inline CSS, the PNGs in `plots` as data URIs."""

    def esc(text: str) -> str:
        return html.escape(_printable(text))

    title = f"kernel-lab report: {results.run_id}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for block in _blocks(results, base, new):
        parts.append(f"<h{block.level}>{esc(block.title)}</h{block.level}>")
        parts += [f"<p>{esc(p)}</p>" for p in block.paragraphs]
        if block.bullets:
            parts.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in block.bullets) + "</ul>")
        parts += [_html_table(t) for t in block.tables]
        parts += [f"<pre>{esc(text)}</pre>" for text in block.pre]
    pngs = [p for p in plots if p.suffix.lower() == ".png"]
    if pngs:
        parts.append("<h2>Plots</h2>")
        for p in pngs:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(p.stem)}">'
                f"<figcaption>{esc(p.stem)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------
# Plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def render_plots(
    results: RunResults, outdir: Path, base: str = "baseline", new: str = "patched"
) -> list[Path]:
    """Bandwidth vs jobs per (mode, workload), one line per variant; PNG and SVG.

    Error bars are the 95% CI (none when a point has one run). In latency
    mode a dashed line shows ideal scaling from `new`'s 1-job bandwidth.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display in CI or over SSH
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, NullLocator

    outdir.mkdir(parents=True, exist_ok=True)
    by: dict[tuple[str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for s in results.samples:
        by[(s.mode, s.workload)][s.variant][s.numjobs].append(s.bw_mib)

    paths: list[Path] = []
    for mode in _order((m for m, _ in by), MODE_ORDER):
        for workload in _order((w for m, w in by if m == mode), WORKLOAD_ORDER):
            variants = by[(mode, workload)]
            fig, ax = plt.subplots(figsize=(6.4, 4.0))
            xs_all = {n for per_variant in variants.values() for n in per_variant}
            one = variants.get(new, {}).get(1)
            if mode == "latency" and one:
                m1 = summarize(one).mean
                xs = sorted(xs_all)
                ax.plot(xs, [m1 * n for n in xs], "--", color="grey", label="ideal scaling")
            for variant in _order(variants, (base, new)):
                points = sorted(variants[variant].items())
                stats = [summarize(v) for _, v in points]
                xs = [n for n, _ in points]
                errs = [s.ci95 if math.isfinite(s.ci95) else 0.0 for s in stats]
                ax.errorbar(
                    xs, [s.mean for s in stats], yerr=errs, marker="o", capsize=3, label=variant
                )
            ax.set_xscale("log", base=2)
            ticks = sorted(xs_all)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("fio jobs")
            ax.set_ylabel("bandwidth (MiB/s)")
            ax.set_title(f"{workload}, {mode} mode")
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            stem = outdir / f"{_slug(mode)}-{_slug(workload)}"
            for suffix in (".png", ".svg"):
                path = stem.with_suffix(suffix)
                fig.savefig(path, dpi=100)
                paths.append(path)
            plt.close(fig)
    return paths


# --------------------------------------------------------------------------
# JUnit

# XML 1.0 forbids most control characters; consoles are full of them.
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _XML_BAD.sub("\ufffd", _ANSI.sub("", text))


def render_junit(results: RunResults) -> str:
    """JUnit XML: a testsuite per variant, a testcase per check."""
    variants = _order(
        [*results.variants, *(c.variant for c in results.checks)], ("baseline", "patched")
    )
    root = ET.Element("testsuites", name=_xml(f"kernel-lab {results.run_id}"))
    total = failed = 0
    total_time = 0.0
    for variant in variants:
        checks = [c for c in results.checks if c.variant == variant]
        fails = sum(not c.passed for c in checks)
        time = sum(c.duration_s for c in checks)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_xml(variant),
            tests=str(len(checks)),
            failures=str(fails),
            errors="0",
            skipped="0",
            time=f"{time:.3f}",
            timestamp=_xml(results.created),
        )
        info = results.variants.get(variant, {})
        if info:
            props = ET.SubElement(suite, "properties")
            for key, value in info.items():
                ET.SubElement(props, "property", name=_xml(key), value=_xml(_value(value)))
        for c in checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(f"kernel-lab.{variant}"),
                name=_xml(c.name),
                time=f"{c.duration_s:.3f}",
            )
            if not c.passed:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=_xml(f"expected {c.expected}; observed {c.observed}"),
                    type="ExpectationFailed",
                )
                failure.text = _xml(
                    f"expected: {c.expected}\nobserved: {c.observed}\n"
                    + (f"details: {json.dumps(c.details, sort_keys=True)}\n" if c.details else "")
                )
            if c.console_excerpt:
                ET.SubElement(case, "system-out").text = _xml(c.console_excerpt)
        total += len(checks)
        failed += fails
        total_time += time
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --------------------------------------------------------------------------
# Files and merging


def write_report(
    results: RunResults, outdir: Path, base: str = "baseline", new: str = "patched"
) -> dict[str, Path]:
    """Write results.json, report.md, report.html, junit.xml and plots/."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"results": results.save(outdir / "results.json")}
    plots_dir = outdir / "plots"
    plots = render_plots(results, plots_dir, base, new)
    links = [p.relative_to(outdir).as_posix() for p in plots if p.suffix == ".png"]
    writes = {
        "markdown": (outdir / "report.md", render_markdown(results, base, new, links)),
        "html": (outdir / "report.html", render_html(results, plots, base, new)),
        "junit": (outdir / "junit.xml", render_junit(results)),
    }
    for key, (path, text) in writes.items():
        path.write_text(text, encoding="utf-8")
        paths[key] = path
    paths["plots"] = plots_dir
    return paths


def merge(results_list: Sequence[RunResults]) -> RunResults:
    """Merge shard results into one.

    Refuses (ConfigError) when shards disagree on `inputs`: their numbers
    would not describe the same kernels. Identical samples (same variant,
    workload, mode, numjobs, repeat) and checks (same name, variant) are
    kept once; if two shards disagree on one, the first sample and the
    failing check are kept and a note says so. Variant facts and the
    accelerator are merged with a note on conflicts (separately built
    bzImages need not be bit-identical).
    """
    if not results_list:
        raise ConfigError("nothing to merge")
    first = results_list[0]
    for other in results_list[1:]:
        keys = set(first.inputs) | set(other.inputs)
        differ = sorted(k for k in keys if first.inputs.get(k, None) != other.inputs.get(k, None))
        if differ:
            raise ConfigError(
                f"cannot merge {other.run_id} into {first.run_id}: inputs differ in "
                + ", ".join(differ)
            )
    notes: list[str] = [n for r in results_list for n in r.notes]
    variants: dict[str, dict[str, Any]] = {}
    for r in results_list:
        for name, info in r.variants.items():
            have = variants.setdefault(name, dict(info))
            for key, value in info.items():
                if key not in have:
                    have[key] = value
                elif have[key] != value:
                    notes.append(f"merge: shard {r.run_id} has another {name} {key}: {value!r}")

    samples: dict[tuple[str, str, str, int, int], BenchSample] = {}
    for r in results_list:
        for s in r.samples:
            if s.key not in samples:
                samples[s.key] = s
            elif samples[s.key] != s:
                notes.append(f"merge: conflicting sample {s.key} in {r.run_id}; kept the first")
    checks: dict[tuple[str, str], CheckResult] = {}
    for r in results_list:
        for c in r.checks:
            have = checks.get(c.key)
            if have is None:
                checks[c.key] = c
            elif have != c:
                notes.append(
                    f"merge: conflicting check {c.key} in {r.run_id}; kept a failing result"
                )
                if have.passed and not c.passed:
                    checks[c.key] = c
    accels = list(dict.fromkeys(r.accel for r in results_list if r.accel))
    if len(accels) > 1:
        notes.append(f"merge: shards ran under different accelerators: {', '.join(accels)}")
    return RunResults(
        run_id=first.run_id,
        created=min(r.created for r in results_list),
        inputs=dict(first.inputs),
        variants=variants,
        accel="+".join(accels),
        samples=tuple(samples.values()),
        checks=tuple(checks.values()),
        notes=tuple(dict.fromkeys(notes)),
    )
