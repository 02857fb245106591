"""Sentences that read the comparison for the reader: what the numbers mean
for the FUSE parallel-direct-writes patch. Derived from the data only."""

from __future__ import annotations

from collections.abc import Sequence

from lab.kernel.letter_figures import CoverLetterFigures
from lab.report.analysis import WORKLOAD_ORDER, Row, figures_of, mean, order
from lab.report.cells import num, pct, stated
from lab.results import SHARED_WORKLOADS, RunResults

# Said once, here: why ssf and ssf-presized differ.
SSF_STARTS_EMPTY = (
    "ssf starts with an empty file (fio fallocate=none), so its first writes extend it; "
    "extending writes take the exclusive inode lock even on a patched kernel, which limits "
    "ssf's parallelism. ssf-presized pre-sizes the file with truncate so that every write is "
    "non-extending."
)

NULL_MODE = (
    "Null mode: the server drops the data, so a WRITE costs only CPU time; {cpus}the fio jobs, "
    "the kernel and the server threads compete for the same CPUs, so letting WRITEs run in "
    "parallel cannot add much throughput. Differences here reflect locking and scheduling "
    "overhead more than concurrency."
)


def _latency_scaling(workload: str, rows: Sequence[Row], base: str, new: str) -> str | None:
    mine = [r for r in rows if r.workload == workload and r.speedup_new is not None]
    if not mine:
        return None
    top = max(mine, key=lambda r: r.numjobs)
    text = (
        f"Latency mode, {workload}: {new} reaches {top.speedup_new:.2f}x its 1-job "
        f"bandwidth at {top.numjobs} jobs (ideal {num(top.ideal_speedup_new)}x)"
    )
    if top.speedup_base is not None:
        text += f", {base} {top.speedup_base:.2f}x (ideal {num(top.ideal_speedup_base)}x)"
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
            f" (at most {num(top.inflight_base)} in flight vs {num(top.inflight_new)} "
            f"for {new})."
        )
    return text


def explanation(results: RunResults, rows: Sequence[Row], base: str, new: str) -> list[str]:
    """Sentences that read the tables for the reader, from the data only."""
    out: list[str] = []
    latency = [r for r in rows if r.mode == "latency"]
    for workload in order((r.workload for r in latency), WORKLOAD_ORDER):
        text = _latency_scaling(workload, latency, base, new)
        if text:
            out.append(text)
    delays = sorted({s.write_delay_us for s in results.samples if s.mode == "latency"})
    if latency and delays:
        out.append(f"In latency mode the server delayed each WRITE by "
                   f"{', '.join(str(d) for d in delays)} µs.")  # fmt: skip
    if any(r.mode == "null" for r in rows):
        vcpus = results.inputs.get("vcpus")
        out.append(NULL_MODE.format(cpus=f"with {vcpus} vCPUs " if vcpus else ""))
        null = [r for r in rows if r.mode == "null" and r.comparison]
        for workload in order((r.workload for r in null), WORKLOAD_ORDER):
            top = max((r for r in null if r.workload == workload), key=lambda r: r.numjobs)
            out.append(
                f"Null mode, {workload} at {top.numjobs} jobs: {new} {pct(top.gain_pct)} "
                f"vs {base} ({top.verdict})."
            )
    if any(r.workload == "ssf" for r in rows):
        text = SSF_STARTS_EMPTY
        ext = {
            w: mean(s.extending_writes for s in results.samples
                    if s.workload == w and s.variant == new)
            for w in ("ssf", "ssf-presized")
        }  # fmt: skip
        if ext["ssf"] is not None:
            text += f" Extending WRITEs per {new} run: ssf {num(ext['ssf'])}"
            if ext["ssf-presized"] is not None:
                text += f", ssf-presized {num(ext['ssf-presized'])}"
            text += "."
        out.append(text)
    significant = [r for r in rows if r.comparison and r.comparison.significant]
    better = sum(r.verdict == "better" for r in significant)
    out.append(
        f"{len(significant)} of {len(rows)} rows differ significantly "
        f"({better} better, {len(significant) - better} worse for {new})."
    )
    figures = figures_of(results)
    if figures is not None:
        out.append(_cover_letter(figures))
    return out


def _cover_letter(figures: CoverLetterFigures) -> str:
    """What the cover letter found, at its two widest points, beside ours."""
    found = []
    for w in figures.workloads:
        if w.unchanged:
            found.append(f"{w.label} unchanged")
            continue
        widest = [f"{stated(g)} at {n}" for n, g in sorted(w.stated_gain_pct.items())[-2:]]
        widest[0] += " jobs"
        found.append(f"{w.label} gains of {' and '.join(widest)}")
    return (f"The cover letter measured on {figures.setup}: {', '.join(found)}. In a small VM "
            "absolute numbers are far lower; the shape of the scaling is what compares.")
