"""The cover letter's own job file, swept over numjobs on the real baseline and
patched kernels through `lab bench --job-file`, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]


def test_the_ssf_job_file_runs_on_the_fuse_mount_one_row_per_numjobs(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "lab.cli", "bench", "--job-file", "examples/ssf.fio",
         "--jobs", "1,2", "--repeat", "1", "--results", str(out)],
        cwd=REPO, text=True, capture_output=True, timeout=1500)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((out / "results.json").read_text())
    samples = results["samples"]
    # One row per kernel, mode and numjobs: the sweep, not one run per kernel.
    assert sorted((s["variant"], s["mode"], s["numjobs"]) for s in samples) == sorted(
        (v, m, n) for v in ("baseline", "patched") for m in ("latency", "null") for n in (1, 2))
    assert {s["workload"] for s in samples} == {"ssf"}
    assert all(s["bw_bytes"] > 0 for s in samples)
    # The writes went through our FUSE server (directory=/tmp/dest would have
    # put them on the guest's own disk, where the server sees none), and the
    # baseline's exclusive inode lock let exactly one in at a time.
    assert all(s["max_inflight"] >= 1 for s in samples)
    assert {s["max_inflight"] for s in samples if s["variant"] == "baseline"} == {1}
    notes = " ".join(results["notes"])
    assert "[global] directory=/tmp/dest -> /mnt/bench/runN/tmp/dest" in notes
    assert "numjobs set per row by the sweep" in notes
    assert (out / "reproduce.sh").is_file()
