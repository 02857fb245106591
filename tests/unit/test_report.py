"""Results round-trip, comparison rows and every report format, on synthetic data."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import pytest
from junitparser import Failure, JUnitXml

from lab.errors import ConfigError
from lab.report import (
    comparison_table,
    merge,
    render_html,
    render_junit,
    render_markdown,
    write_report,
)
from lab.results import (
    ORIGINAL_BW_MIB,
    ORIGINAL_GAIN_PCT,
    BenchSample,
    CheckResult,
    RunResults,
)

MIB = 1 << 20
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
        inputs={"kernel": "6.1.0", "patch_sha256": "abc", "vcpus": 4},
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


def test_original_figures():
    assert ORIGINAL_GAIN_PCT["ssf"] == {1: 0, 2: 0, 4: 42, 8: 246.8, 16: 549, 32: 630.33}
    assert set(ORIGINAL_GAIN_PCT["fpj"].values()) == {0}
    assert ORIGINAL_BW_MIB["baseline"]["ssf"][32] == 2822
    assert ORIGINAL_BW_MIB["patched"]["ssf"][16] == pytest.approx(25.6 * 1024)
    assert ORIGINAL_BW_MIB["baseline"]["fpj"][1] == 3441


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
    from lab.report import render_plots

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
