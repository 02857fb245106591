"""The lab as a user runs it: `lab ssh`, `lab test` in shards merged by `lab report`,
and a small `lab run` (build, boot, check, benchmark, report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]


def lab(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


def test_lab_ssh_prints_the_release_and_exits_with_the_command_status(builds, no_qemu_leak):
    for name in ("baseline", "patched"):
        out = lab("ssh", name, "--", "uname", "-r")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == builds[name].release
    failing = lab("ssh", "baseline", "--", "exit", "42")  # not one of the lab's own codes
    assert failing.returncode == 42


def test_two_shards_merge_into_the_unsharded_matrix(tmp_path, no_qemu_leak):
    cases = "flag-off,short-write,eof-exact"
    runs = {}
    for name, extra in (("all", []), ("s1", ["--shard", "1/2"]), ("s2", ["--shard", "2/2"])):
        out = lab("test", "--variant", "baseline,patched", "-k", cases,
                  "--results", str(tmp_path / name), *extra)
        assert out.returncode == 0, out.stdout + out.stderr
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    merged = lab("report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                 "--out", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr

    def matrix(results):
        return sorted((c["name"], c["variant"], c["passed"]) for c in results["checks"])

    shard_sizes = [len(runs["s1"]["checks"]), len(runs["s2"]["checks"])]
    assert sorted(shard_sizes) == [3, 3]  # 6 items split evenly, none twice
    merged_results = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert matrix(merged_results) == matrix(runs["all"])
    junit = JUnitXml.fromfile(str(tmp_path / "merged" / "junit.xml"))
    assert sum(suite.tests for suite in junit) == 6


def test_merge_refuses_shards_from_different_inputs(tmp_path):
    for name, image in (("a", "one"), ("b", "two")):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({
            "schema": 1, "run_id": name, "created": "2026-01-01T00:00:00+00:00",
            "inputs": {"image": image}, "variants": {}, "accel": "tcg",
            "samples": [], "checks": [], "notes": []}))
    out = lab("report", "--merge", str(tmp_path / "a"), str(tmp_path / "b"),
              "--out", str(tmp_path / "m"))
    assert out.returncode == 2
    assert "image" in out.stderr


def test_small_lab_run_produces_the_report(tmp_path, no_qemu_leak):
    out_dir = tmp_path / "run"
    out = lab("run", "--workload", "ssf-presized", "--jobs", "1,4", "--mode", "latency",
              "--repeat", "1", "-k", "parallel-nonextending,append-stale",
              "--results", str(out_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("report.md", "report.html", "results.json", "junit.xml", "reproduce.sh",
                 "baseline.console.log", "patched.console.log"):
        assert (out_dir / name).is_file(), name
    results = json.loads((out_dir / "results.json").read_text())
    inflight = {(s["variant"], s["numjobs"]): s["max_inflight"] for s in results["samples"]}
    assert inflight[("patched", 4)] == 4 and inflight[("baseline", 4)] == 1
    assert all(c["passed"] for c in results["checks"])
    assert {c["name"] for c in results["checks"]} == {"parallel-nonextending", "append-stale"}
    assert "| ssf-presized | 4 |" in (out_dir / "report.md").read_text()
    assert "data:image/png;base64," in (out_dir / "report.html").read_text()
    assert "latency" in out.stdout and "ssf-presized" in out.stdout  # the summary table
