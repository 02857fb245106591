"""The user's own tests on a real guest: `lab test --script`, the pytest plugin
on examples/, and how scripts that fail, hang or upset the kernel are judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from lab.results import SubResult
from lab.suite import checks, scripts

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SCRIPT = REPO / "examples" / "tests" / "fuse-ktap.sh"
SCRIPTS = REPO / "tests" / "data" / "scripts"


def test_lab_test_runs_the_example_script_with_ktap_sub_results(tmp_path, no_qemu_leak):
    out_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "test", "--script", str(EXAMPLE_SCRIPT),
         "--variant", "patched", "-k", "parallel-nonextending", "--results", str(out_dir)],
        cwd=REPO, text=True, capture_output=True, timeout=800)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((out_dir / "results.json").read_text())
    by_name = {c["name"]: c for c in results["checks"]}
    assert set(by_name) == {"parallel-nonextending", "script:fuse-ktap.sh"}
    check = by_name["script:fuse-ktap.sh"]
    assert check["passed"] and check["variant"] == "patched"
    assert check["details"]["format"] == "KTAP 1" and check["details"]["exit_status"] == 0
    assert check["subtests"] == [
        {"name": n, "ok": True, "directive": ""}
        for n in ("write-direct", "read-back", "parallel-disjoint-writes", "backing-store",
                  "fallocate")]
    assert "script:fuse-ktap.sh" in out.stdout  # the matrix on the terminal
    junit = JUnitXml.fromfile(str(out_dir / "junit.xml"))
    assert "script:fuse-ktap.sh" in {case.name for suite in junit for case in suite}
    assert "script:fuse-ktap.sh" in (out_dir / "report.md").read_text()


def test_pytest_plugin_runs_the_examples(no_qemu_leak):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--lab-variants",
         "patched", str(REPO / "examples" / "tests")],
        cwd=REPO, text=True, capture_output=True, timeout=800)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def run_script(fleet, builds, name: str, timeout_s: float = 60.0) -> checks.CaseRun:
    _vm, guest = fleet("patched")
    (script,) = scripts.resolve([SCRIPTS / name], "test")
    (case,) = scripts.cases([script], "patched", timeout_s)
    return checks.run_case(case, guest, "patched", builds["patched"].features)


def test_the_script_gets_its_environment(fleet, builds):
    run = run_script(fleet, builds, "env-check.sh")
    r = run.result
    assert r.passed, r.observed
    assert r.details["format"] == "TAP 13" and len(r.subtests) == 4


def test_output_that_is_not_ktap_is_judged_by_exit_status(fleet, builds):
    r = run_script(fleet, builds, "plain-output.sh").result
    assert r.passed
    assert r.details["parsed"] is False and "not parsed" in r.observed
    assert r.details["stdout_tail"] == "copied 3 files\nok"


def test_a_failing_ktap_script_names_the_failed_subtest(fleet, builds):
    r = run_script(fleet, builds, "failing-ktap.sh").result
    assert not r.passed
    assert r.observed == ("KTAP 1: 2 ok, 1 skipped, 1 not ok (io/write); exit 1; "
                          "stderr: write: short write at 4096")
    assert r.subtests == (SubResult("io", False), SubResult("io/read", True),
                          SubResult("io/write", False), SubResult("io/mmap", True, "SKIP"),
                          SubResult("cleanup", True))


def test_a_kernel_report_during_the_script_fails_it_with_the_excerpt(fleet, builds):
    r = run_script(fleet, builds, "kernel-warning.sh").result
    assert not r.passed
    assert r.details["exit_status"] == 0 and r.subtests[0].ok
    assert "kernel warning" in r.observed
    assert "lab_script_test" in r.console_excerpt


def test_a_hanging_script_fails_at_its_timeout_with_the_blocked_stacks(fleet, builds):
    # 2 s KVM-scale (8 s under TCG): the script has its writers stuck within
    # about 2 s, and is killed before the 10 s hung-task detector would speak.
    r = run_script(fleet, builds, "hang-on-fuse.sh", timeout_s=2.0).result
    assert "# both writers are stuck" in r.details["stdout_tail"], r.details["stdout_tail"]
    assert not r.passed and r.timed_out
    assert r.observed.startswith("timed out after")
    assert "blocked in the kernel: dd" in r.observed
    stacks = r.details["blocked_tasks"]
    assert "task:dd state:D" in " ".join(stacks.split())
    # The extending writer waits for the inode lock in FUSE's write path.
    assert "rwsem_down_write_slowpath" in stacks and "fuse_file_write_iter" in stacks
    # The lab cleaned up: the next script finds a working mount.
    assert run_script(fleet, builds, "env-check.sh").result.passed
