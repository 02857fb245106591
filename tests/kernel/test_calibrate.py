"""Every case keeps its power: each witness patch of both series (a kernel
that gets one case's question wrong, patches/*/witnesses/) fails its case,
and the series' newest version passes every witnessed case (`lab calibrate`,
one run each; `lab calibrate --repeat 5` is the benchmark of detection rates).
If a change to the suite, labfs or labprobe makes a case vacuous, or its
verdict depend on a race, a witness stops failing and this test names it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.kernel import witnesses

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3000)]
REPO = Path(__file__).resolve().parents[2]
SERIES = [REPO / "patches" / "fuse-parallel-dio", REPO / "patches" / "fuse-parallel-dio-6.12"]


@pytest.mark.parametrize("series", SERIES, ids=lambda p: p.name)
def test_every_witness_fails_its_case_and_the_newest_version_none(series, tmp_path,
                                                                  no_qemu_leak):
    # Two witness VMs at a time: each case mostly waits on the server's holds.
    out = subprocess.run([sys.executable, "-m", "lab.cli", "calibrate", "--series", str(series),
                          "--jobs", "2", "--results", str(tmp_path)], cwd=REPO, text=True,
                         capture_output=True, timeout=2900)
    table = out.stdout[-6000:]
    rows = json.loads((tmp_path / "calibration.json").read_text())["rows"]
    drifted = [f"{r['variant']} {r['case']}: failed {r['failed']}/{r['runs']}: {r['evidence']}"
               for r in rows
               if r["failed"] != (0 if r["variant"] == "patched" else r["runs"])]
    assert not drifted, "\n".join(drifted) + "\n" + table
    assert out.returncode == 0, table + out.stderr[-3000:]
    shown = {r["variant"] for r in rows}
    assert {w.name for w in witnesses.load(series)} <= shown
    assert {r["case"] for r in rows if r["variant"] == "patched"} == {
        w.case for w in witnesses.load(series)}
