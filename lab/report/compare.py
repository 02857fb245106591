"""`lab compare RUN_A RUN_B`: one run's benchmark against another's (one version
of a series against the next, today against last week), with the same table,
plots and significance rule as a run's own report.

Variants are matched by name (each variant both runs measured), or one pair
is chosen. Runs whose benchmark settings differ measured different things,
so they are refused unless forced; the number of repeats may differ (it
only changes the intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError
from lab.kernel import letter_figures
from lab.report import document
from lab.report.analysis import MODE_ORDER, comparison_table, headline, order
from lab.report.plots import render_gain_plots, render_plots, slug
from lab.report.sections import comparison_block, gain_block, headline_card
from lab.results import RunResults

IGNORED_BENCH_KEYS = frozenset({"repeat"})


def load_run(path: Path, what: str) -> RunResults:
    """A run folder (its results.json) or a results.json file."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{what} {path}: no results.json there")
    return RunResults.load(file)


def bench_differences(a: RunResults, b: RunResults) -> list[str]:
    """The benchmark settings (inputs["bench"]) that differ, except the repeats."""
    for run, what in ((a, "RUN_A"), (b, "RUN_B")):
        if not isinstance(run.inputs.get("bench"), dict):
            raise ConfigError(f"{what} {run.run_id}: no benchmark settings (inputs.bench); "
                              "was it a `lab bench` or `lab run`?")  # fmt: skip
    ba, bb = a.inputs["bench"], b.inputs["bench"]
    return sorted(k for k in set(ba) | set(bb)
                  if k not in IGNORED_BENCH_KEYS and ba.get(k) != bb.get(k))  # fmt: skip


def _measured(run: RunResults) -> list[str]:
    return list(dict.fromkeys(s.variant for s in run.samples))


def pairs(a: RunResults, b: RunResults, variant_a: str | None = None,
          variant_b: str | None = None) -> list[tuple[str, str]]:
    """(variant of A, variant of B) to compare: the chosen pair, or every name both measured."""
    have_a, have_b = _measured(a), _measured(b)
    if variant_a or variant_b:
        va, vb = variant_a or variant_b, variant_b or variant_a
        for name, have, what in ((va, have_a, "RUN_A"), (vb, have_b, "RUN_B")):
            if name not in have:
                raise ConfigError(f"--variant-{what[-1].lower()} {name}: {what} measured "
                                  f"{', '.join(have) or 'nothing'}")  # fmt: skip
        return [(va, vb)]  # type: ignore[list-item]
    common = [v for v in have_a if v in have_b]
    if not common:
        raise ConfigError(f"no variant measured in both runs (RUN_A: {', '.join(have_a) or '-'}; "
                          f"RUN_B: {', '.join(have_b) or '-'}); choose with --variant-a and "
                          "--variant-b")  # fmt: skip
    return [(v, v) for v in common]


@dataclass(frozen=True)
class Pair:
    """Two runs' samples of one variant each, relabelled into one RunResults."""

    results: RunResults
    base: str  # label of RUN_A's side
    new: str  # label of RUN_B's side


def combine(a: RunResults, b: RunResults, va: str, vb: str) -> Pair:
    base, new = f"{a.run_id}:{va}", f"{b.run_id}:{vb}"
    if base == new:
        base, new = f"A:{va}", f"B:{vb}"
    samples = tuple(dataclasses.replace(s, variant=base) for s in a.samples if s.variant == va)
    samples += tuple(dataclasses.replace(s, variant=new) for s in b.samples if s.variant == vb)
    results = RunResults(
        run_id=f"{a.run_id} vs {b.run_id}", created=b.created, inputs=dict(b.inputs),
        variants={base: dict(a.variants.get(va, {})), new: dict(b.variants.get(vb, {}))},
        accel=a.accel if a.accel == b.accel else f"{a.accel} / {b.accel}", samples=samples,
    )  # fmt: skip
    return Pair(results, base, new)


def _runs_block(a: RunResults, b: RunResults, differing: Sequence[str]) -> document.Block:
    bullets = [f"RUN_A: {a.run_id} ({a.created}, {a.accel or 'accelerator unknown'})",
               f"RUN_B: {b.run_id} ({b.created}, {b.accel or 'accelerator unknown'})"]  # fmt: skip
    ra, rb = a.inputs["bench"].get("repeat"), b.inputs["bench"].get("repeat")
    if ra != rb:
        bullets.append(f"repeats differ ({ra} vs {rb}): only the intervals change")
    bullets += [f"FORCED: benchmark setting {k} differs: {a.inputs['bench'].get(k)!r} vs "
                f"{b.inputs['bench'].get(k)!r}" for k in differing]  # fmt: skip
    # The cover letter's figures are what a report sets beside a run, not what it measured.
    others = sorted(k for k in set(a.inputs) | set(b.inputs)
                    if k not in ("bench", letter_figures.RECORD_KEY)
                    and a.inputs.get(k) != b.inputs.get(k))  # fmt: skip
    if others:
        bullets.append("other inputs that differ (kernels, image, VM): " + ", ".join(others))
    return document.Block("Runs compared", bullets=tuple(bullets))


def _pair_block(pair: Pair, prefix: str) -> document.Block:
    rows = comparison_table(pair.results, pair.base, pair.new)
    top = headline(rows)
    # No cover letter here: its figures belong to one series, a comparison to two runs.
    children = [headline_card(top, pair.base, pair.new)] if top else []
    children += [dataclasses.replace(
        comparison_block(mode, [r for r in rows if r.mode == mode], pair.base, pair.new),
        level=3)
        for mode in order((r.mode for r in rows), MODE_ORDER)]  # fmt: skip
    if top:
        children.append(dataclasses.replace(
            gain_block(rows, pair.base, pair.new), level=3))
    children = [dataclasses.replace(c, figures=tuple(prefix + f for f in c.figures))
                for c in children]  # fmt: skip
    return document.Block(f"{pair.new} against {pair.base}", children=tuple(children))


def write_comparison(run_a: Path, run_b: Path, out: Path | None = None, *,
                     variant_a: str | None = None, variant_b: str | None = None,
                     force: bool = False) -> tuple[dict[str, Path], str]:
    """Check, compare and write compare.md, compare.html and plots/ under `out`
    (default: beside RUN_B's folder). Returns the paths and a plain-text summary."""
    a, b = load_run(run_a, "RUN_A"), load_run(run_b, "RUN_B")
    differing = bench_differences(a, b)
    if differing and not force:
        details = "; ".join(f"{k}: {a.inputs['bench'].get(k)!r} vs {b.inputs['bench'].get(k)!r}"
                            for k in differing)  # fmt: skip
        raise ConfigError(f"benchmark settings differ in {', '.join(differing)} ({details}); "
                          "the runs measured different things (--force compares anyway)")
    chosen = pairs(a, b, variant_a, variant_b)  # checked before anything is written
    folder_b = run_b if run_b.is_dir() else run_b.parent
    out = out or folder_b.parent / f"compare-{slug(a.run_id)}-vs-{slug(b.run_id)}"
    out.mkdir(parents=True, exist_ok=True)
    blocks = [_runs_block(a, b, differing)]
    images: dict[str, Path] = {}
    for va, vb in chosen:
        pair = combine(a, b, va, vb)
        sub = slug(f"{va}-vs-{vb}") if len(chosen) > 1 else ""
        prefix = f"{sub}/" if sub else ""
        plots_dir = out / "plots" / sub if sub else out / "plots"
        rows = comparison_table(pair.results, pair.base, pair.new)
        # No ideal line: scaling from one run's variant says nothing about the other's.
        plots = render_plots(pair.results, plots_dir, pair.base, pair.new, ideal=False)
        plots += render_gain_plots(rows, plots_dir, pair.base, pair.new)
        images.update({prefix + p.stem: p for p in plots if p.suffix == ".png"})
        blocks.append(_pair_block(pair, prefix))
    title = f"kernel-lab comparison: {b.run_id} against {a.run_id}"
    links = {name: path.relative_to(out).as_posix() for name, path in images.items()}
    paths = {"markdown": out / "compare.md", "html": out / "compare.html", "plots": out / "plots"}
    paths["markdown"].write_text(document.markdown(title, blocks, links), encoding="utf-8")
    paths["html"].write_text(document.html_page(title, blocks, images), encoding="utf-8")
    return paths, document.text(title, blocks)
