"""A run's report on disk: results.json, report.md, report.html, report.txt,
junit.xml and plots/, all from one RunResults.

The content is built once (lab.report.sections) and rendered by lab.report.document, so the
Markdown and the HTML cannot disagree; report.txt is the cover letter's
format (lab.report.letter), junit.xml comes from lab.report.junit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.report import document, sections
from lab.report.analysis import comparison_table, figures_of
from lab.report.junit import render_junit
from lab.report.letter import letter_text
from lab.report.plots import render_gain_plots, render_plots
from lab.results import RunResults


def _title(results: RunResults) -> str:
    return f"kernel-lab report: {results.run_id}"


def render_markdown(
    results: RunResults,
    base: str = "baseline",
    new: str = "patched",
    plot_links: Sequence[str] = (),
) -> str:
    """The report as GitHub-flavoured Markdown; `plot_links` are image paths to embed."""
    links = {Path(link).stem: link for link in plot_links}
    return document.markdown(_title(results), sections.blocks(results, base, new), links)


def render_html(
    results: RunResults, plots: Sequence[Path] = (), base: str = "baseline", new: str = "patched"
) -> str:
    """A self-contained page: inline CSS, the PNGs in `plots` as data URIs."""
    images = {p.stem: p for p in plots if p.suffix.lower() == ".png"}
    return document.html_page(_title(results), sections.blocks(results, base, new), images)


def write_report(
    results: RunResults, outdir: Path, base: str = "baseline", new: str = "patched"
) -> dict[str, Path]:
    """Write results.json, report.md, report.html, report.txt, junit.xml and plots/."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"results": results.save(outdir / "results.json")}
    plots_dir = outdir / "plots"
    plots = render_plots(results, plots_dir, base, new)
    plots += render_gain_plots(comparison_table(results, base, new), plots_dir, base, new,
                               figures=figures_of(results))
    links = [p.relative_to(outdir).as_posix() for p in plots if p.suffix == ".png"]
    writes = {
        "markdown": (outdir / "report.md", render_markdown(results, base, new, links)),
        "html": (outdir / "report.html", render_html(results, plots, base, new)),
        "text": (outdir / "report.txt", letter_text(results, base, new)),
        "junit": (outdir / "junit.xml", render_junit(results)),
    }
    for key, (path, text) in writes.items():
        path.write_text(text, encoding="utf-8")
        paths[key] = path
    paths["plots"] = plots_dir
    return paths
