"""The report's content, as Blocks: the verdict first, then each comparison
table beside its plot, the reading of the numbers, the checks, and the
inputs (compact, with the raw records folded away)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lab.kernel import letter_figures
from lab.kernel.letter_figures import CoverLetterFigures
from lab.report.analysis import (
    MODE_ORDER,
    Row,
    VariantVerdict,
    comparison_table,
    figures_of,
    gain_curves,
    headline,
    order,
    original_raw_gain_pct,
    verdicts,
)
from lab.report.cells import DASH, num, pct, stated, value_text
from lab.report.document import Block, Table, printable
from lab.report.letter import letter_text
from lab.report.narrative import explanation
from lab.report.plots import bandwidth_name, gain_name
from lab.report.stats import Summary, significance_rule
from lab.results import CheckResult, RunResults, SubResult

MODE_WHAT = {
    "latency": "the server holds each WRITE, so throughput counts WRITEs in flight",
    "null": "the server acknowledges WRITEs without copying data",
}


def _bw(s: Summary | None) -> str:
    if s is None:
        return DASH
    if s.n == 1:
        return f"{s.mean:.1f} (n=1)"
    return f"{s.mean:.1f} (±{s.ci95:.1f}, n={s.n})"


def _speed(measured: float | None, ideal: float | None) -> str:
    text = DASH if measured is None else f"{measured:.2f}x"
    return text if ideal is None else f"{text} (ideal {num(ideal)}x)"


def _range(interval: tuple[float, float] | None) -> str:
    return f"{pct(interval[0])} to {pct(interval[1])}" if interval else DASH


def _mode_title(mode: str) -> str:
    what = MODE_WHAT.get(mode)
    return f"Mode: {mode}" + (f" ({what})" if what else "")


# --------------------------------------------------------------------------
# Verdict


def _variant_card(v: VariantVerdict) -> Block:
    if v.features is None:
        claims = "Claims: not recorded."
    else:
        claims = f"Claims: {', '.join(v.features) or 'none (unpatched behaviour expected)'}."
    paras = [claims, f"{v.passed} of {v.checks} checks held."]
    if v.failed:
        paras.append("Contradicted by: " + ", ".join(v.failed) + ".")
    bullets = tuple(f"kernel {k.kind} in {k.case}: {k.summary}" for k in v.kernel_failures)
    consoles = tuple(Block(f"console of {v.variant} during {k.case}", level=4, collapsed=True,
                           pre=(printable(k.evidence.rstrip()),))
                     for k in v.kernel_failures if k.evidence)  # fmt: skip
    title = {"held": f"{v.variant}: claims held",
             "contradicted": f"{v.variant}: claims contradicted",
             "not checked": f"{v.variant}: not checked"}[v.status]  # fmt: skip
    if v.kernel_failures:
        n = len(v.kernel_failures)
        title += f", {n} kernel failure{'s' if n > 1 else ''}"
    tone = {"held": "good", "contradicted": "bad"}.get(v.status, "warn")
    return Block(title, level=3, paragraphs=tuple(paras), bullets=bullets, children=consoles,
                 tone=tone)


def headline_card(r: Row, base: str, new: str, *, cover_letter: bool = False) -> Block:
    c = r.comparison
    assert c is not None
    where = f"{r.workload}, {r.numjobs} jobs, {r.mode} mode"
    interval = r.gain_interval
    spread = (f"95% range {_range(interval)}" if interval
              else "one run per side, so no interval")  # fmt: skip
    tone = "warn" if not c.significant else ("good" if c.verdict == "better" else "bad")
    return Block(
        f"Headline gain: {pct(c.gain_pct)}",
        level=3,
        paragraphs=(
            f"{new} vs {base}, {where}: {pct(c.gain_pct)} ({spread}); "
            + ("significant, " + c.verdict if c.significant else "not significant") + ".",
            f"Mean bandwidth {c.base.mean:.1f} → {c.new.mean:.1f} MiB/s"
            + (f"; the cover letter states {stated(r.original_gain_pct)} at {r.numjobs} jobs."
               if cover_letter else "."),
        ),
        tone=tone,
    )


def verdict_block(results: RunResults, rows: Sequence[Row], base: str, new: str) -> Block:
    cards = []
    top = headline(rows)
    if top is not None:
        cards.append(headline_card(top, base, new, cover_letter=figures_of(results) is not None))
    paras = []
    if results.checks:
        cards += [_variant_card(v) for v in verdicts(results, (base, new))]
    else:
        paras.append("No suite checks ran in this job, so the claims were not tested.")
    if not cards:
        paras.append("Nothing was measured.")
    return Block("Verdict", paragraphs=tuple(paras), children=tuple(cards))


# --------------------------------------------------------------------------
# Comparisons


def _original_note(figures: CoverLetterFigures) -> str:
    """What the "original gain" column holds, from the figures' own mapping."""
    stated = " and ".join(w.label for w in figures.workloads if not w.unchanged)
    how = [f"{o} is compared with {w.name}" for w in figures.workloads for o in w.ours
           if o != w.name]
    how += [f"{w.name} was reported unchanged" for w in figures.workloads if w.unchanged]
    return (f" Original gain: the cover letter's stated {stated} gain"
            + (f" ({'; '.join(how)})" if how else "") + ".")


def comparison_block(mode: str, rows: Sequence[Row], base: str, new: str,
                     *, figures: CoverLetterFigures | None = None) -> Block:
    cover_letter = figures is not None
    headers = ("workload", "jobs", f"{base} MiB/s (±ci95, n)", f"{new} MiB/s (±ci95, n)",
               "gain", "significant", "WRITEs in flight b/p")
    main = tuple(
        (r.workload, str(r.numjobs), _bw(r.base), _bw(r.new), pct(r.gain_pct),
         f"yes ({r.verdict})" if r.comparison and r.comparison.significant else "no",
         f"{num(r.inflight_base)} / {num(r.inflight_new)}")
        + ((stated(r.original_gain_pct),) if cover_letter else ())
        for r in rows
    )  # fmt: skip
    scaling = tuple((r.workload, str(r.numjobs), _speed(r.speedup_base, r.ideal_speedup_base),
                     _speed(r.speedup_new, r.ideal_speedup_new)) for r in rows)  # fmt: skip
    scale_headers = ("workload", "jobs", f"{base} vs 1 job", f"{new} vs 1 job")
    note = significance_rule()
    if figures is not None:
        headers += ("original gain",)
        note += _original_note(figures)
    workloads = list(dict.fromkeys(r.workload for r in rows))
    return Block(
        title=_mode_title(mode),
        paragraphs=(note,),
        tables=(Table(headers, main),)
        + ((Table(scale_headers, scaling),) if any(r.speedup_base or r.speedup_new for r in rows)
           else ()),
        figures=tuple(bandwidth_name(mode, w) for w in workloads),
    )  # fmt: skip


def gain_block(rows: Sequence[Row], base: str, new: str,
               *, figures: CoverLetterFigures | None = None) -> Block:
    """Our gain per jobs (beside the cover letter's, given its figures), per mode,
    with the plot."""
    cover_letter = figures is not None
    modes = order((r.mode for r in rows if r.comparison), MODE_ORDER)
    tables = []
    for mode in modes:
        curves = gain_curves(rows, mode, figures)
        jobs = sorted({p.numjobs for c in curves for p in c.points})
        cells = {(c.label, p.numjobs): pct(p.gain_pct) for c in curves for p in c.points}
        tables.append(Table(("jobs", *(f"{c.label} ({mode})" for c in curves)),
                            tuple((str(n), *(cells.get((c.label, n), DASH) for c in curves))
                                  for n in jobs)))  # fmt: skip
    what = "Ours with its 95% range" if cover_letter else "The gain with its 95% range"
    if figures is not None:
        what += "; " + figures.curves
    return Block(
        f"Gain of {new} over {base} vs jobs" + (", beside the cover letter" if cover_letter
                                                 else ""),
        paragraphs=(what + ("" if cover_letter else "."),),
        tables=tuple(tables),
        figures=tuple(gain_name(m) for m in modes),
    )  # fmt: skip


def original_block(figures: CoverLetterFigures) -> Block:
    rows = []
    for w in figures.workloads:
        raw = original_raw_gain_pct(w)
        for n, b in w.unpatched_mib.items():
            p = w.patched_mib[n]
            rows.append((w.name, str(n), f"{b:.0f}", f"{p:.0f}", pct(raw.get(n)),
                         stated(w.stated_gain_pct.get(n))))  # fmt: skip
    return Block(
        title=figures.title,
        paragraphs=(figures.about,),
        tables=(Table(("workload", "jobs", "unpatched MiB/s", "patched MiB/s", "gain from raw",
                       "stated gain"), tuple(rows)),),
    )  # fmt: skip


# --------------------------------------------------------------------------
# Checks, variants, inputs


def checks_block(checks: Sequence[CheckResult]) -> Block:
    variants = order((c.variant for c in checks), ("baseline", "patched"))
    names = list(dict.fromkeys(c.name for c in checks))
    cell = {c.key: f"{'PASS' if c.passed else 'FAIL'}: {c.observed}" for c in checks}
    rows = tuple((name, *(cell.get((name, v), DASH) for v in variants)) for name in names)
    pre = tuple(
        printable(
            f"FAIL {c.name} on {c.variant}\nexpected: {c.expected}\nobserved: {c.observed}"
            + (f"\n--- console ---\n{c.console_excerpt.rstrip()}" if c.console_excerpt else "")
        )
        for c in checks if not c.passed
    )  # fmt: skip
    passed = sum(c.passed for c in checks)
    return Block(
        title="Checks",
        paragraphs=(f"{passed} of {len(checks)} checks passed.",),
        tables=(Table(("check", *variants), rows),),
        pre=pre,
    )


def _subtest_cell(sub: SubResult | None) -> str:
    if sub is None:
        return DASH
    if sub.skipped:
        return "skip"
    if sub.failed:
        return "NOT OK"
    return "ok"


def subtests_blocks(checks: Sequence[CheckResult]) -> list[Block]:
    """The sub-results of the tree's and the user's tests (kselftest, KUnit,
    scripts), one table per check, side by side with what the A/B made of them."""
    variants = order((c.variant for c in checks), ("baseline", "patched"))
    out = []
    for name in dict.fromkeys(c.name for c in checks if c.kind.judged_against_base):
        mine = {c.variant: c for c in checks if c.name == name}
        subs = {v: {s.name: s for s in c.subtests} for v, c in mine.items()}
        names = list(dict.fromkeys(n for v in variants for n in subs.get(v, {})))
        if not names:
            continue
        readings = [c.ab for c in mine.values() if c.ab is not None]
        regressed = {n for r in readings for n in r.regressions}
        shared = {n for r in readings for n in r.pre_existing}
        rows = tuple((n, *(_subtest_cell(subs.get(v, {}).get(n)) for v in variants),
                      "regression" if n in regressed else "fails on both" if n in shared else "")
                     for n in names)
        out.append(Block(f"Sub-results of {name}", level=3, collapsed=not (regressed | shared),
                         tables=(Table(("sub-test", *variants, "A/B"), rows),)))
    return out


def _compact(v: Any, limit: int = 40) -> str:
    """One short line per input: hashes cut, lists joined, dicts as key=value."""
    if isinstance(v, dict):
        return "; ".join(f"{k}={_compact(x, 12)}" for k, x in v.items()) or DASH
    if isinstance(v, list | tuple):
        return ",".join(_compact(x, limit) for x in v) or DASH
    text = value_text(v) or DASH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inputs_blocks(results: RunResults) -> list[Block]:
    # The cover letter's figures, recorded with the inputs, have their own block
    # (original_block); results.json keeps them.
    inputs = {k: v for k, v in results.inputs.items() if k != letter_figures.RECORD_KEY}
    bullets = (f"run: {results.run_id}", f"created: {results.created}",
               f"accelerator: {results.accel or 'unknown'}",
               *(f"{k}: {_compact(v)}" for k, v in inputs.items()))  # fmt: skip
    blocks = [Block("Inputs", bullets=bullets)]
    if results.variants:
        vrows = tuple(
            (name, str(info.get("kernel_release", DASH)),
             ", ".join(info.get("features") or ()) or DASH,
             str(info.get("bzimage_sha256", DASH))[:16])
            for name, info in results.variants.items()
        )  # fmt: skip
        blocks.append(Block("Variants", tables=(
            Table(("variant", "kernel", "features", "bzImage"), vrows),)))
    samples = tuple(
        (s.variant, s.mode, s.workload, str(s.numjobs), str(s.repeat), f"{s.bw_mib:.1f}",
         f"{s.iops:.0f}", str(s.max_inflight), str(s.extending_writes), str(s.write_delay_us))
        for s in results.samples
    )  # fmt: skip
    raw = json.dumps({"inputs": inputs, "variants": results.variants}, indent=2,
                     sort_keys=True, default=str)  # fmt: skip
    blocks.append(Block(
        "Raw records (inputs, variants, every fio run)", collapsed=True, pre=(raw,),
        tables=((Table(("variant", "mode", "workload", "jobs", "repeat", "MiB/s", "IOPS",
                        "max in flight", "extending", "delay µs"), samples),)
                if samples else ()),
    ))  # fmt: skip
    return blocks


def blocks(results: RunResults, base: str = "baseline", new: str = "patched") -> list[Block]:
    """The whole report, in reading order."""
    rows = comparison_table(results, base, new)
    figures = figures_of(results)
    out = [verdict_block(results, rows, base, new)]
    if rows:
        for mode in order((r.mode for r in rows), MODE_ORDER):
            out.append(comparison_block(mode, [r for r in rows if r.mode == mode], base, new,
                                        figures=figures))
        if any(r.comparison for r in rows):
            out.append(gain_block(rows, base, new, figures=figures))
        out.append(Block("Explanation", paragraphs=tuple(explanation(results, rows, base, new))))
        if figures is not None:
            out.append(original_block(figures))
    if results.checks:
        out.append(checks_block(results.checks))
        out += subtests_blocks(results.checks)
    out += inputs_blocks(results)
    letter = letter_text(results, base, new)
    if letter:
        out.append(Block("Paste-ready results (the cover letter's format, as report.txt)",
                         collapsed=True, pre=(letter,)))  # fmt: skip
    if results.notes:
        out.append(Block("Notes", bullets=results.notes))
    return out

