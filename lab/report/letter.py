"""report.txt: our numbers in the cover letter's own format, ready to paste.

The cover letter lists, per kernel and workload, one fio summary line per
numjobs (`numjobs: 4 WRITE: bw=1234MiB/s (1294MB/s), ...`), then "SSF gain
in percentage" lines. We print the same lines from our samples: bw is the
mean over the repeats and the range is the slowest to the fastest repeat
(fio's range is over the jobs of one run, which group_reporting makes equal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lab.report.analysis import MODE_ORDER, order
from lab.report.stats import gain_pct
from lab.results import RunResults

# The cover letter's order and names; ours that it lacks follow.
TITLES = {"fpj": "File per job", "ssf": "SSF", "ssf-presized": "SSF (presized)"}


def fio_rate(bytes_per_s: float, base: int) -> str:
    """A rate the way fio prints it: at most 4 digits before the unit, e.g.
    1234MiB/s, 12.5GiB/s (base 1024) or 1294MB/s, 13.4GB/s (base 1000)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB") if base == 1024 else ("B", "kB", "MB", "GB", "TB")
    value, i = float(bytes_per_s), 0
    while value >= 10000 and i < len(units) - 1:
        value /= base
        i += 1
    text = f"{value:.1f}" if i and value < 100 else f"{value:.0f}"
    return f"{text}{units[i]}/s"


def _both(bytes_per_s: float) -> str:
    return f"{fio_rate(bytes_per_s, 1024)} ({fio_rate(bytes_per_s, 1000)})"


def _gain(value: float) -> str:
    """+7%, +12.5%, +99.25%: the cover letter's spelling."""
    text = f"{value:+.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def letter_text(results: RunResults, base: str = "baseline", new: str = "patched") -> str:
    """The cover letter's Results section, from our samples ("" when there are none)."""
    bw: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    for s in results.samples:
        bw[(s.mode, s.variant, s.workload, s.numjobs)].append(s.bw_bytes)
    out: list[str] = []
    for mode in order((s.mode for s in results.samples), MODE_ORDER):
        in_mode = [s for s in results.samples if s.mode == mode]
        workloads = order((s.workload for s in in_mode), tuple(TITLES))
        delays = sorted({s.write_delay_us for s in in_mode})
        what = (f"the server holds each WRITE {', '.join(map(str, delays))} us"
                if mode == "latency" else "the server drops the data")  # fmt: skip
        vcpus = results.inputs.get("vcpus")
        out.append(f"Results (kernel-lab {results.run_id}, {mode} mode: {what}; "
                   f"{results.accel or 'unknown accelerator'}"
                   + (f", {vcpus} vCPUs" if vcpus else "") + "):")  # fmt: skip
        for variant in (base, new):
            out.append(f"{variant}{'=' * 17}")
            for workload in workloads:
                jobs = sorted({s.numjobs for s in in_mode
                               if s.workload == workload and s.variant == variant})  # fmt: skip
                if not jobs:
                    continue
                out.append(TITLES.get(workload, workload))
                for n in jobs:
                    runs = bw[(mode, variant, workload, n)]
                    mean = sum(runs) / len(runs)
                    out.append(f"numjobs: {n} WRITE: bw={_both(mean)}, "
                               f"{fio_rate(min(runs), 1024)}-{fio_rate(max(runs), 1024)} "
                               f"({fio_rate(min(runs), 1000)}-{fio_rate(max(runs), 1000)}), "
                               f"runs={len(runs)}")  # fmt: skip
            out.append("")
        out += _gain_lines(bw, mode, workloads, base, new)
    return "\n".join(out).rstrip() + "\n" if out else ""


def _gain_lines(bw: dict[tuple[str, str, str, int], list[float]], mode: str,
                workloads: Sequence[str], base: str, new: str) -> list[str]:
    out = []
    for workload in workloads:
        jobs = sorted(n for (m, v, w, n) in bw if (m, v, w) == (mode, base, workload)
                      and (mode, new, workload, n) in bw)  # fmt: skip
        if not jobs:
            continue
        out.append(f"{TITLES.get(workload, workload)} gain in percentage:-")
        for n in jobs:
            b, p = bw[(mode, base, workload, n)], bw[(mode, new, workload, n)]
            gain = gain_pct(sum(b) / len(b), sum(p) / len(p))
            out.append(f"For {n} fio thread{'s' if n > 1 else ''}: {_gain(gain)}")
        out.append("")
    return out
