"""lab selftime's pure parts: statistics, the edited patch, the table, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.jobs.selftime import Figure, Request, edited_patch, render

REPO = Path(__file__).resolve().parents[2]
V5 = REPO / "patches" / "fuse-parallel-dio" / "v5.patch"


def test_median_and_nearest_rank_p95():
    f = Figure("boot", (3.0, 2.0, 4.0, 2.5, 10.0))
    assert f.median == 3.0 and f.p95 == 10.0
    assert Figure("one", (1.5,)).p95 == 1.5
    d = Figure("x", (1.0, 2.0), parts={"ssh": (0.5, 0.25), "none": ()}).to_dict()
    assert d["min"] == 1.0 and d["max"] == 2.0 and d["parts_median"] == {"ssh": 0.375}


def test_the_edited_patch_differs_in_one_comment_line_only(tmp_path):
    a = edited_patch(V5, tmp_path / "a.patch", "edit 1").read_text().splitlines()
    b = edited_patch(V5, tmp_path / "b.patch", "edit 2").read_text().splitlines()
    old = V5.read_text().splitlines()
    assert len(a) == len(b) == len(old)  # hunk line counts still hold
    changed = [(x, y) for x, y in zip(old, a, strict=True) if x != y]
    assert len(changed) == 1
    before, after = changed[0]
    assert after == f"{before} (edit 1)" and after.lstrip("+\t ").startswith("*")
    assert a != b  # every run builds a new kernel


def test_a_patch_without_the_comment_is_refused(tmp_path):
    plain = tmp_path / "plain.patch"
    plain.write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(ConfigError, match="no comment line"):
        edited_patch(plain, tmp_path / "out.patch", "edit")


def test_bad_requests_are_bad_input():
    with pytest.raises(ConfigError, match="figures are boot, case, fio, patch"):
        Request(figures=("boot", "speed"))
    with pytest.raises(ConfigError, match="no case matches"):
        Request(case="no-such-case")
    assert Request().figures == ("boot", "case", "fio", "patch")


def test_the_table_shows_each_figure_with_its_parts_and_the_host_load():
    report = {
        "host": {"date": "2026-12-02T21:30+00:00", "cpus": 2, "load_avg_1_5_15": [5.0, 6.0, 7.0],
                 "load_avg_at_start": [4.0, 5.0, 6.0], "accel": "tcg (no KVM)",
                 "machine": "pc"},
        "repeat": 3,
        "figures": [Figure("boot to SSH", (3.0, 2.5, 4.0), goal="p50 <= 2.5 s",
                           parts={"kernel": (1.0, 1.2, 1.1)}).to_dict()],
    }
    text = render(report)
    assert "load average 4.0 5.0 6.0 at the start and 5.0 6.0 7.0 at the end" in text
    row = next(line for line in text.splitlines() if line.startswith("boot to SSH"))
    assert row.split()[3:8] == ["3", "3.00", "4.00", "2.50", "4.00"]
    assert "p50 <= 2.5 s" in row
    assert any(line.split()[:2] == ["kernel", "1.10"] for line in text.splitlines())


def test_lab_selftime_refuses_an_unknown_figure_with_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab.cli", "selftime", "--only", "boot,warp",
                          "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "figures are boot, case, fio, patch" in out.stderr
