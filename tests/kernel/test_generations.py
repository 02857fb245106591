"""One suite, two kernel generations: on Debian's 6.12 the cases whose
expectations follow the series' declared features (inode I/O modes, mmap)
judge the baseline, the 6.2-6.8 form (v1) and the stock code, as a user runs
them (`lab test --series patches/fuse-parallel-dio-6.12`), and a bisection
over the 6.12 series finds the version that honours the I/O modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
SERIES_612 = REPO / "patches" / "fuse-parallel-dio-6.12"


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=2300)


def test_612_versions_are_judged_by_what_they_declare(tmp_path, no_qemu_leak):
    out = lab("test", "--series", str(SERIES_612), "--variant", "baseline,v1,stock",
              "-k", "parallel-nonextending,cached-open,mmap", "--fresh",
              "--results", str(tmp_path))
    # v1 ignores the inode's I/O mode, which every 6.12 version keeps.
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    checks = json.loads((tmp_path / "results.json").read_text())["checks"]
    verdicts = {(c["variant"], c["name"]): (c["passed"], c["observed"]) for c in checks}
    failed = sorted(k for k, (passed, _) in verdicts.items() if not passed)
    assert failed == [("v1", "cached-open")], verdicts
    assert verdicts[("v1", "cached-open")][1].startswith("8 of 8 WRITEs in flight")
    assert verdicts[("stock", "cached-open")][1].startswith("1 of 8 WRITEs in flight")
    assert verdicts[("stock", "parallel-nonextending")][1].startswith("8 of 8")
    assert verdicts[("baseline", "parallel-nonextending")][1].startswith("1 of 8")
    assert verdicts[("stock", "mmap")][1].startswith("8 of 8")  # a private map changes nothing
    variants = json.loads((tmp_path / "results.json").read_text())["variants"]
    assert all(v["kernel_release"].startswith("6.12.") for v in variants.values())


def test_612_series_bisect_names_the_version_that_honours_io_modes(tmp_path, no_qemu_leak):
    out = lab("bisect", "--series", str(SERIES_612), "--test", "cached-open", "--first-good",
              "--results", str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "bisect.json").read_text())
    assert record["first"] == "stock", record
