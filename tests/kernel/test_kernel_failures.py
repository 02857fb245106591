"""A kernel that crashes, warns or hangs fails its check with the kernel's own
evidence; the lab restarts the VM, runs the remaining cases, and leaves
nothing running (issue 11). Real kernels: one built with the kernel's LKDTM,
and one with a patch whose lock and unlock kinds do not pair up."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab import pipeline
from lab.jobs import runs
from lab.suite import catalog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkdtm import lkdtm_variant, provoke_case  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.build, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
CORE = next(c for c in catalog.CASES if c.name == "parallel-nonextending")


@pytest.fixture(scope="module")
def lkdtm(lab_config, lab_image, lab_logs, lab_ui):
    v = lkdtm_variant(lab_config, "patched", lab_logs)
    return pipeline.prepare_variants(lab_config, [v], lab_logs, lab_ui, lab_image)


def _failure(result) -> dict:
    return dataclasses.asdict(result.kernel) if result.kernel else {}


def test_crash_hang_and_warning_fail_their_case_and_the_rest_still_runs(
        lkdtm, lab_config, lab_logs, lab_ui, no_qemu_leak):
    items = [("lkdtm", provoke_case("BUG")), ("lkdtm", CORE),
             ("lkdtm", provoke_case("HUNG_TASK")), ("lkdtm", provoke_case("WARNING")),
             ("lkdtm", provoke_case("EXCEPTION")), ("lkdtm", CORE)]
    results = runs.run_checks(lab_config, lkdtm, items, lab_logs, lab_ui)
    by = [(r.name, r.passed) for r in results]
    assert by == [("lkdtm-bug", False), ("parallel-nonextending", True),
                  ("lkdtm-hung_task", False), ("lkdtm-warning", False),
                  ("lkdtm-exception", False), ("parallel-nonextending", True)]
    bug, _, hang, warning, exception, _ = results
    assert _failure(bug)["kind"] == "crash"
    assert "kernel BUG at drivers/misc/lkdtm" in bug.console_excerpt
    assert _failure(hang)["kind"] == "hang"
    assert "blocked for more than" in hang.console_excerpt
    assert _failure(hang)["blocked_tasks"] >= 1 and "lkdtm" in hang.console_excerpt
    assert "WARNING:" in warning.console_excerpt and "kernel warning" in warning.observed
    assert _failure(exception)["kind"] == "crash"
    assert "NULL pointer dereference" in exception.console_excerpt


def test_a_patch_with_mismatched_unlock_fails_and_the_lab_cleans_up(tmp_path, no_qemu_leak):
    """`lab test` on a broken patch: exit 1 (the kernel failed), the failed
    case carries the kernel's report, the next case runs on a fresh VM."""
    out = tmp_path / "run"
    # The run's own temp folder, so that other lab runs on the host (whose VM
    # folders are also /tmp/lab-user-*) do not count; short, for QMP's sockets.
    scratch = Path(tempfile.mkdtemp(prefix="lt-"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lab.cli", "test",
             "--patch", str(ROOT / "tests/data/patches/unlock-mismatch.patch"),
             "--expect", "parallel-direct-writes", "-k", "parallel-nonextending,flag-off",
             "--results", str(out), "--fresh"],  # the kernel's failure, not a cached verdict
            cwd=ROOT, capture_output=True, text=True, timeout=2000,
            env={**os.environ, "TMPDIR": str(scratch)})
        left = sorted(p.name for p in scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert not left, f"the run left {left} in its temp folder"
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    checks = {c["name"]: c for c in data["checks"] if c["variant"] == "user"}
    broken = checks["parallel-nonextending"]
    assert not broken["passed"]
    assert ("DEBUG_RWSEMS" in broken["console_excerpt"] or "WARNING:" in broken["console_excerpt"]
            or "blocked for more than" in broken["console_excerpt"]), broken
    assert checks["flag-off"]["passed"], checks["flag-off"]
    junit = (out / "junit.xml").read_text()
    assert "parallel-nonextending" in junit and "failure" in junit
