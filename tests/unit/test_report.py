"""Results round-trip, comparison rows and every report format, on synthetic data."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from lab.errors import ConfigError
from lab.kernel.series import load_series
from lab.report import analysis
from lab.report.analysis import comparison_table
from lab.report.junit import render_junit
from lab.report.write import render_html, render_markdown, write_report
from lab.results import BenchSample, CheckResult, KernelEvidence, RunResults, merge

MIB = 1 << 20
SERIES = Path(__file__).resolve().parents[2] / "patches/fuse-parallel-dio"
JOBS = (1, 2, 4, 8)


def samples() -> list[BenchSample]:
    """Latency mode: patched scales with jobs on shared files, baseline does not."""
    out = []
    for workload in ("ssf", "ssf-presized", "fpj"):
        for n in JOBS:
            for variant in ("baseline", "patched"):
                scales = workload == "fpj" or variant == "patched"
                for repeat in range(3):
                    bw = 100.0 * (n if scales else 1) * (1 + 0.01 * repeat)
                    out.append(
                        BenchSample(
                            variant=variant,
                            workload=workload,
                            mode="latency",
                            numjobs=n,
                            repeat=repeat,
                            bw_bytes=bw * MIB,
                            iops=bw,
                            max_inflight=n if scales else 1,
                            extending_writes=7 if workload == "ssf" else 0,
                            write_delay_us=2000,
                        )
                    )
    # One null-mode point measured once per side: never significant.
    for variant in ("baseline", "patched"):
        out.append(BenchSample(variant, "ssf-presized", "null", 4, 0, 500 * MIB, 500, 2, 0, 0))
    return out


def checks() -> list[CheckResult]:
    return [
        CheckResult("parallel-writes", "baseline", True, "max_inflight == 1", "1", {}, 3.5),
        CheckResult("parallel-writes", "patched", True, "max_inflight > 1", "8", {"max": 8}, 4.25),
        CheckResult(
            "extending-exclusive",
            "patched",
            False,
            "no extending WRITE overlaps another",
            "overlap of 2",
            {"max_extending_overlap": 2},
            1.0,
            "[  12.3] WARNING: at fs/fuse/file.c\x1b[0m\x00 <&>",
        ),
        CheckResult("<script>alert(1)</script>", "baseline", True, "x", "y & z", {}, 0.5),
    ]


def make(**changes) -> RunResults:
    base = RunResults(
        run_id="run-1",
        created="2024-01-02T03:04:05+00:00",
        # What a run of the series records: its cover letter's figures too.
        inputs={"kernel": "6.1.0", "patch_sha256": "abc", "vcpus": 4,
                **load_series(SERIES).report_inputs()},
        variants={
            "baseline": {"kernel_release": "6.1.0-lab", "features": []},
            "patched": {"kernel_release": "6.1.0-lab+", "features": ["parallel-direct-writes"]},
        },
        accel="kvm",
        samples=tuple(samples()),
        checks=tuple(checks()),
        notes=("synthetic",),
    )
    return dataclasses.replace(base, **changes)


def test_results_round_trip(tmp_path):
    results = make()
    path = results.save(tmp_path / "sub" / "results.json")
    assert RunResults.load(path) == results
    assert json.loads(path.read_text())["schema"] == 1


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError):
        RunResults.load(bad)
    doc = make().to_dict()
    del doc["samples"][0]["bw_bytes"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="bw_bytes"):
        RunResults.load(bad)
    with pytest.raises(ConfigError):
        RunResults.load(tmp_path / "missing.json")


def test_original_figures_are_the_series_data():
    figures = load_series(SERIES).cover_letter
    ssf, fpj = figures.workloads
    assert ssf.stated_gain_pct == {1: 0, 2: 0, 4: 42, 8: 246.8, 16: 549, 32: 630.33}
    assert fpj.unchanged and set(fpj.stated_gain_pct.values()) == {0}
    assert ssf.unpatched_mib[32] == 2822
    assert ssf.patched_mib[16] == pytest.approx(25.6 * 1024)
    assert fpj.unpatched_mib[1] == 3441
    assert figures.workload_for("ssf-presized") is ssf and figures.workload_for("x") is None
    # the record a run keeps in results.json reads back the same
    assert analysis.figures_of(make()) == figures
    assert load_series(SERIES.parent / "fuse-parallel-dio-6.12").cover_letter is None


def test_comparison_rows():
    rows = comparison_table(make())
    key = {(r.mode, r.workload, r.numjobs): r for r in rows}
    assert len(rows) == 3 * len(JOBS) + 1
    assert [r.mode for r in rows][0] == "latency"

    r = key[("latency", "ssf-presized", 8)]
    assert r.base.n == r.new.n == 3
    assert r.base.mean == pytest.approx(101.0)
    assert r.gain_pct == pytest.approx(700.0)
    assert r.comparison.significant and r.verdict == "better"
    assert (r.inflight_base, r.inflight_new) == (1, 8)
    assert (r.ideal_speedup_base, r.ideal_speedup_new) == (1.0, 8.0)
    assert r.speedup_new == pytest.approx(8.0)
    assert r.speedup_base == pytest.approx(1.0)
    assert r.original_gain_pct == 246.8  # ssf-presized compares with the original ssf

    fpj = key[("latency", "fpj", 4)]
    assert fpj.ideal_speedup_base == fpj.ideal_speedup_new == 4.0
    assert fpj.verdict == "no change" and fpj.original_gain_pct == 0.0

    null = key[("null", "ssf-presized", 4)]
    assert null.verdict == "no change" and null.ideal_speedup_new is None
    assert null.speedup_new is None  # no 1-job point in null mode


def test_markdown():
    md = render_markdown(make())
    header = (
        "| workload | jobs | baseline MiB/s (±ci95, n) | patched MiB/s (±ci95, n) | gain "
        "| significant | WRITEs in flight b/p | original gain |"
    )
    assert header in md
    assert "| ssf-presized | 8 | 101.0 (±" in md
    assert "| +700.0% | yes (better) | 1 / 8 | +246.8% |" in md
    assert "| ssf-presized | 4 | 500.0 (n=1) | 500.0 (n=1) | +0.0% | no |" in md
    for figure in ("+630.33%", "+549%", "| ssf | 4 | 4794 | 14746 | +207.6% | +42% |", "3441"):
        assert figure in md
    assert "with 4 vCPUs" in md
    assert "fallocate=none" in md and "ssf-presized" in md
    assert "exclusive inode lock" in md
    assert "at most 1 in flight vs 8" in md
    # checks table: name x variant
    assert "| check | baseline | patched |" in md
    assert "| extending-exclusive | — | FAIL: overlap of 2 |" in md
    assert "&lt;script>" in md and "<script>" not in md
    # console noise is cleaned, not copied: no ESC or NUL in the file
    assert "fs/fuse/file.c" in md and "\x1b" not in md and "\x00" not in md
    assert "Null mode, ssf-presized at 4 jobs: patched +0.0% vs baseline (no change)." in md


def test_html_is_self_contained_and_escaped(tmp_path):
    from lab.report.plots import render_plots

    results = make()
    plots = render_plots(results, tmp_path / "plots")
    names = {p.name for p in plots}
    assert {"latency-ssf.png", "latency-ssf.svg", "latency-fpj.png", "null-ssf-presized.svg"} <= (
        names
    )
    page = render_html(results, plots)
    assert page.count("data:image/png;base64,") == 4
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "+700.0%" in page and "+630.33%" in page
    assert "\x1b" not in page and "\x00" not in page
    assert "<link" not in page and 'src="http' not in page


def test_junit_counts(tmp_path):
    text = render_junit(make())
    ET.fromstring(text.encode())  # well-formed despite the console's control characters
    path = tmp_path / "junit.xml"
    path.write_text(text)
    xml = JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"baseline", "patched"}
    assert (suites["baseline"].tests, suites["baseline"].failures) == (2, 0)
    assert (suites["patched"].tests, suites["patched"].failures) == (2, 1)
    cases = {c.name: c for c in suites["patched"]}
    bad = cases["extending-exclusive"]
    assert bad.classname == "kernel-lab.patched"
    assert bad.time == pytest.approx(1.0)
    failure = next(r for r in bad.result if isinstance(r, Failure))
    assert "no extending WRITE overlaps another" in failure.message
    assert "overlap of 2" in failure.message
    assert "fs/fuse/file.c" in bad.system_out
    assert cases["parallel-writes"].is_passed


def test_write_report(tmp_path):
    paths = write_report(make(), tmp_path / "out")
    for key in ("results", "markdown", "html", "junit"):
        assert paths[key].is_file()
    assert (paths["plots"] / "latency-ssf.png").is_file()
    assert "](plots/latency-ssf.png)" in paths["markdown"].read_text()
    assert RunResults.load(paths["results"]) == make()


def test_merge_dedupes_and_combines():
    s = samples()
    c = checks()
    a = make(run_id="a", samples=tuple(s[:10]), checks=tuple(c[:2]), notes=("n1",))
    b = make(run_id="b", samples=tuple(s[5:]), checks=tuple(c[1:]), notes=("n1", "n2"))
    merged = merge([a, b])
    assert merged.samples == tuple(s)
    assert merged.checks == tuple(c)
    assert merged.notes == ("n1", "n2")
    assert merged.inputs == a.inputs and merged.run_id == "a"


def test_merge_keeps_a_failure_on_conflict():
    good = CheckResult("c", "patched", True, "e", "ok")
    bad = CheckResult("c", "patched", False, "e", "broken")
    merged = merge([make(checks=(good,)), make(checks=(bad,))])
    assert merged.checks == (bad,)
    assert any("conflicting check" in n for n in merged.notes)


def test_merge_refuses_differing_inputs():
    a = make()
    b = make(run_id="b", inputs={**a.inputs, "patch_sha256": "def", "extra": 1})
    with pytest.raises(ConfigError, match="extra, patch_sha256"):
        merge([a, b])
    with pytest.raises(ConfigError):
        merge([])


# --------------------------------------------------------------------------
# The verdict, the gain curves, report.txt and the renderers' shared model


def test_verdicts_name_the_failing_cases_and_kernel_failures():
    from lab.report.analysis import verdicts

    crash = CheckResult("truncate-race", "patched", False, "no crash", "kernel panic: x",
                        kernel=KernelEvidence("panic", "Kernel panic - x",
                                              evidence="[ 1.0] Kernel panic - x"))
    got = {v.variant: v for v in verdicts(make(checks=(*checks(), crash)))}
    assert got["baseline"].status == "held" and got["baseline"].checks == 2
    assert got["baseline"].features == ()
    p = got["patched"]
    assert p.status == "contradicted"
    assert p.failed == ("extending-exclusive", "truncate-race")
    assert (p.checks, p.passed) == (3, 1)
    assert [(k.case, k.kind, k.summary) for k in p.kernel_failures] == [
        ("truncate-race", "panic", "Kernel panic - x")]
    assert p.kernel_failures[0].evidence == "[ 1.0] Kernel panic - x"  # no excerpt: the details'
    assert verdicts(make(checks=()), ("baseline",))[0].status == "not checked"


def test_report_opens_with_the_verdict_and_headline():
    from lab.report.analysis import headline

    rows = comparison_table(make())
    top = headline(rows)
    # latency first, the pre-sized shared file first, the widest point
    assert (top.mode, top.workload, top.numjobs) == ("latency", "ssf-presized", 8)
    low, high = top.gain_interval
    assert low < top.gain_pct < high
    md = render_markdown(make())
    assert md.index("## Verdict") < md.index("## Mode: latency") < md.index("## Inputs")
    assert "### Headline gain: +700.0%" in md
    assert "### baseline: claims held" in md
    assert "### patched: claims contradicted" in md
    assert "Contradicted by: extending-exclusive." in md
    assert "<details><summary>Raw records" in md
    assert md.count("fallocate=none") == 1  # the ssf note, said once
    assert "at least 5%" in md


def test_the_threshold_is_one_value():
    from lab.report import stats

    assert f"at least {stats.MIN_EFFECT_PCT:g}%" in stats.significance_rule()
    base, new = stats.summarize([100.0, 100.1, 99.9]), stats.summarize([104.0, 104.1, 103.9])
    assert not stats.compare(base, new).significant  # +4% < MIN_EFFECT_PCT
    assert stats.compare(base, new, min_effect_pct=3.0).significant


def test_gain_curves_set_ours_beside_the_cover_letter(tmp_path):
    from lab.report.analysis import gain_curves, original_raw_gain_pct
    from lab.report.plots import render_gain_plots

    figures = load_series(SERIES).cover_letter
    rows = comparison_table(make())
    curves = {c.label: c for c in gain_curves(rows, "latency", figures)}
    ours = curves["ours: ssf-presized"]
    assert [p.numjobs for p in ours.points] == list(JOBS)
    assert ours.points[-1].gain_pct == pytest.approx(700.0)
    stated = curves["cover letter: ssf, stated"]
    assert {p.numjobs: p.gain_pct for p in stated.points} == figures.workloads[0].stated_gain_pct
    assert "cover letter: fpj, stated" not in curves  # reported unchanged: no stated curve
    raw = {p.numjobs: p.gain_pct for p in curves["cover letter: ssf, from its raw numbers"].points}
    assert raw[4] == pytest.approx(207.6, abs=0.05)  # 4794 -> 14.4 GiB/s, not the stated +42%
    assert original_raw_gain_pct(figures.workloads[1])[1] == pytest.approx(-7.2, abs=0.05)
    paths = render_gain_plots(rows, tmp_path, figures=figures)
    assert {p.name for p in paths} == {"gain-latency.png", "gain-latency.svg", "gain-null.png",
                                       "gain-null.svg"}


def test_report_txt_is_the_cover_letters_format():
    from lab.report.letter import fio_rate, letter_text

    assert fio_rate(3441 * MIB, 1024) == "3441MiB/s"
    assert fio_rate(3441 * MIB, 1000) == "3608MB/s"
    assert fio_rate(14.9 * 1024 * MIB, 1024) == "14.9GiB/s"
    assert fio_rate(5 * MIB, 1024) == "5120KiB/s"
    text = letter_text(make())
    lines = text.splitlines()
    assert lines[0].startswith("Results (kernel-lab run-1, latency mode: the server holds each "
                               "WRITE 2000 us; kvm, 4 vCPUs)")
    assert lines[1] == "baseline================="
    assert lines[2] == "File per job"  # the cover letter's order: file per job, then SSF
    assert "numjobs: 8 WRITE: bw=101MiB/s (106MB/s), 100MiB/s-102MiB/s (105MB/s-107MB/s), runs=3" \
        in lines
    assert "SSF (presized) gain in percentage:-" in lines
    assert "For 1 fio thread: +0%" in lines and "For 8 fio threads: +700%" in lines
    assert text.index("patched=================") < text.index("SSF gain in percentage:-")


def test_write_report_writes_the_text_and_places_plots_beside_tables(tmp_path):
    paths = write_report(make(), tmp_path)
    assert paths["text"].read_text().startswith("Results (kernel-lab run-1")
    assert (paths["plots"] / "gain-latency.png").is_file()
    md = paths["markdown"].read_text()
    # each mode's plots follow its table; the gain plot follows the gain table
    assert md.index("## Mode: latency") < md.index("](plots/latency-fpj.png)") < md.index(
        "## Mode: null")
    assert md.index("beside the cover letter") < md.index("](plots/gain-latency.png)")
    assert "## Plots" not in md  # every plot has its place
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 6
    assert '<section class="good">\n<h3>Headline gain: +700.0%</h3>' in html


def test_text_rendering_aligns_tables():
    from lab.report.document import Block, Table, text

    out = text("t", [Block("b", paragraphs=("p",), tables=(Table(("a", "bb"), (("1", "2"),)),))])
    assert out.splitlines() == ["t", "=", "", "b", "-", "p", "a  bb", "-  --", "1  2"]


def test_a_series_without_cover_letter_figures_has_no_original_anywhere(tmp_path):
    """A run of a series with no cover-letter-figures.toml (the 6.12 series)."""
    bare = make(inputs={"kernel": "6.1.0", "vcpus": 4})
    assert all(r.original_gain_pct is None for r in comparison_table(bare))
    md = render_markdown(bare)
    for said in ("original gain", "Cover letter figures", "The cover letter measured",
                 "beside the cover letter", "the cover letter states", "cover letter: ssf"):
        assert said.lower() not in md.lower(), said
    assert "Mean bandwidth 101.0 → 808.0 MiB/s." in md  # the headline says no more
    assert "The gain with its 95% range." in md
    with_figures = render_markdown(make())
    assert "| original gain |" in with_figures
    assert ("The cover letter measured on bare metal with the passthrough server's backing "
            "writes disabled: SSF gains of +549% at 16 jobs and +630.33% at 32, file-per-job "
            "unchanged.") in with_figures
    assert (" Original gain: the cover letter's stated SSF gain (ssf-presized is compared "
            "with ssf; fpj was reported unchanged).") in with_figures
    assert "cover_letter" not in with_figures.split("## Inputs")[1].split("<details>")[0]
    paths = write_report(bare, tmp_path)
    assert "original gain" not in paths["html"].read_text()
