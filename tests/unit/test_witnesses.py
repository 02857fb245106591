"""Witness patches as data: each names a case the suite has and says what it
breaks; calibration rows judge detection (all runs fail) and the correct
kernel (no run fails). The builds and runs themselves are in
tests/kernel/test_calibrate.py."""
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.jobs.calibrate import CORRECT, Calibration, Row, chosen
from lab.kernel import witnesses
from lab.suite import catalog

REPO = Path(__file__).resolve().parents[2]
SERIES = sorted(p.parent for p in (REPO / "patches").glob("*/series.toml"))


@pytest.mark.parametrize("folder", SERIES, ids=lambda p: p.name)
def test_every_witness_names_a_case_of_the_suite_and_what_it_breaks(folder):
    cases = {c.name for c in catalog.CASES}
    for w in witnesses.load(folder):
        assert w.case in cases, w.patch
        assert w.breaks and "witness" not in w.breaks.split()[0], w.patch
        assert "\ndiff --git a/" in w.patch.read_text(), w.patch


def test_a_witness_without_its_case_line_is_refused(tmp_path):
    (tmp_path / "witnesses").mkdir()
    (tmp_path / "witnesses" / "x.patch").write_text("Subject: [PATCH] x\n\ndiff --git a/f b/f\n")
    with pytest.raises(ConfigError, match="Case: NAME"):
        witnesses.load(tmp_path)


def test_a_witness_naming_an_unknown_case_is_refused(tmp_path):
    (tmp_path / "witnesses").mkdir()
    (tmp_path / "witnesses" / "x.patch").write_text("Subject: [PATCH] witness for case nope: y\n"
                                                    "\nCase: nope\n---\ndiff --git a/f b/f\n")
    with pytest.raises(ConfigError, match="nope"):
        chosen(tmp_path, ())


def test_detection_must_be_every_run_and_the_correct_kernel_never_fails():
    assert Row("w", "extending", 3, 3).ok
    assert not Row("w", "extending", 2, 3).ok
    assert Row(CORRECT, "extending", 0, 3).ok
    assert not Row(CORRECT, "extending", 1, 3).ok
    cal = Calibration("s", 3, (Row("w", "extending", 3, 3), Row(CORRECT, "extending", 1, 3)))
    assert not cal.ok
    assert [r[4] for r in cal.table().rows] == ["ok", "DRIFT"]


def test_lab_calibrate_with_no_matching_witness_exits_2_before_any_build():
    out = subprocess.run([sys.executable, "-m", "lab.cli", "calibrate", "-k", "no-such"],
                         cwd=REPO, text=True, capture_output=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "no witness matches no-such" in out.stderr
