"""The tree's own tests on real kernels: a kselftest target built from each
variant's source and run in its guest, KUnit suites run as the kernel boots,
and the A/B rule that a failure both sides share is not the patch's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tests" / "data" / "scripts"
PATCHES = REPO / "tests" / "data" / "patches"


def lab(*args: str, timeout: int = 1700) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


def checks_of(out_dir: Path) -> dict[tuple[str, str], dict]:
    results = json.loads((out_dir / "results.json").read_text())
    return {(c["variant"], c["name"]): c for c in results["checks"]}


def test_kselftest_memfd_and_scripts_judged_against_the_base(tmp_path, no_qemu_leak):
    out_dir = tmp_path / "run"
    out = lab("test", "--kselftest", "memfd", "--variant", "baseline,patched",
              "-k", "parallel-nonextending", "--script", str(SCRIPTS / "breaks-on-patched.sh"),
              "--script", str(SCRIPTS / "broken-everywhere.sh"), "--results", str(out_dir),
              "--fresh")
    # Only the sub-test that fails on patched and passed on baseline fails the run.
    assert out.returncode == 1, out.stdout + out.stderr
    got = checks_of(out_dir)
    for variant in ("baseline", "patched"):
        memfd = got[(variant, "kselftest:memfd")]
        assert memfd["passed"] and memfd["kind"] == "kselftest", memfd["observed"]
        # memfd_test, the FUSE test (its own server, built against libfuse 2) and
        # the hugetlbfs test, each a sub-result; the runner's output is kept.
        names = [s["name"] for s in memfd["subtests"]]
        assert names == [f"selftests: memfd: {t}" for t in
                         ("memfd_test", "run_fuse_test.sh", "run_hugetlbfs_test.sh")]
        assert "# selftests: memfd: run_fuse_test.sh" in memfd["details"]["stdout_tail"]
    regressed = got[("patched", "script:breaks-on-patched.sh")]
    assert not regressed["passed"]
    assert regressed["ab"]["regressions"] == ["changed-by-the-patch"]
    assert got[("baseline", "script:breaks-on-patched.sh")]["passed"]
    shared = got[("patched", "script:broken-everywhere.sh")]
    assert shared["passed"] and shared["ab"]["pre_existing"] == [
        "needs-hardware-we-lack"]
    assert got[("baseline", "script:broken-everywhere.sh")]["passed"]  # the reference
    assert "FAIL patched script:breaks-on-patched.sh" in out.stdout
    junit = JUnitXml.fromfile(str(out_dir / "junit.xml"))
    cases = {(case.classname, case.name): case for suite in junit for case in suite}
    assert ("kernel-lab.patched.kselftest:memfd", "selftests: memfd: run_fuse_test.sh") in cases
    failing = cases[("kernel-lab.patched.script:breaks-on-patched.sh", "changed-by-the-patch")]
    assert not failing.is_passed and not failing.is_skipped
    shared_case = cases[("kernel-lab.patched.script:broken-everywhere.sh",
                         "needs-hardware-we-lack")]
    assert shared_case.is_skipped


def test_kunit_suites_run_at_boot_and_catch_a_kernel_bug_as_a_regression(tmp_path,
                                                                        no_qemu_leak):
    # `user` is the baseline plus a patch that makes list_sort() unstable, a
    # bug its own KUnit suite checks for.
    out_dir = tmp_path / "run"
    out = lab("test", "--kunit", "list*", "--patch", str(PATCHES / "list-sort-unstable.patch"),
              "--variant", "baseline,user", "-k", "parallel-nonextending",
              "--results", str(out_dir), "--fresh")
    assert out.returncode == 1, out.stdout + out.stderr
    got = checks_of(out_dir)
    base = got[("baseline", "kunit:list*")]
    assert base["passed"] and base["kind"] == "kunit", base["observed"]
    names = [s["name"] for s in base["subtests"]]
    # Both suites the glob names, each with its test cases as sub-results.
    assert "list-kunit-test" in names and "list_sort" in names
    assert "list-kunit-test/list_test_list_init" in names
    assert len(names) > 30
    broken = got[("user", "kunit:list*")]
    assert not broken["passed"]
    assert broken["ab"]["regressions"] == ["list_sort", "list_sort/list_sort_test"]
    assert got[("user", "parallel-nonextending")]["passed"]  # the lab's own case is unmoved


def test_bad_tree_test_options_fail_before_any_build(tmp_path):
    out = lab("test", "--kselftest", "memfdd", "--variant", "baseline",
              "--results", str(tmp_path / "a"), timeout=600)
    assert out.returncode == 2
    assert "no kselftest target 'memfdd'" in out.stderr and "did you mean memfd" in out.stderr
    out = lab("test", "--kunit", "nosuchsuite*", "--variant", "baseline",
              "--results", str(tmp_path / "b"), timeout=600)
    assert out.returncode == 2 and "no KUnit suite in the source matches" in out.stderr
    out = lab("test", "--kunitconfig", str(tmp_path), "--variant", "baseline",
              "--results", str(tmp_path / "c"), timeout=600)
    assert out.returncode == 2
    assert not list((tmp_path / "a").glob("build-*.log"))
