"""Witness patches as data: each names a case the suite has and says what it
breaks; calibration rows judge detection (all runs fail) and the correct
kernel (no run fails). The builds and runs themselves are in
tests/kernel/test_calibrate.py."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.errors import ConfigError, LabError
from lab.jobs.calibrate import CORRECT, Calibration, Row, _side_by_side, chosen
from lab.kernel import witnesses
from lab.suite import catalog
from lab.ui import Ui

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


def _fake(name: str) -> witnesses.Witness:
    return witnesses.Witness(name=name, case="extending", breaks="x", patch=Path(f"{name}.patch"))


def test_witnesses_side_by_side_give_every_row_and_run_at_most_jobs_at_once():
    running, peak, lock = [0], [0], threading.Lock()

    def witness(w, _p, wui):
        assert wui.quiet  # one live status line cannot show two VMs
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return Row(w.name, w.case, 1, 1)

    prepared = [(_fake(f"w{i}"), None) for i in range(6)]
    rows = list(_side_by_side(prepared, witness, 2, Ui(quiet=True)))
    assert sorted(r.variant for r in rows) == [f"w{i}" for i in range(6)]
    assert peak[0] == 2


def test_a_witness_that_breaks_the_lab_stops_the_calibration():
    def witness(w, _p, _ui):
        if w.name == "w1":
            raise LabError("the host broke")
        return Row(w.name, w.case, 1, 1)

    stopped = []
    with pytest.raises(LabError, match="host broke"):
        list(_side_by_side([(_fake(f"w{i}"), None) for i in range(3)], witness, 2,
                           Ui(quiet=True), lambda: stopped.append(True)))
    assert stopped == [True]  # the witness VMs still up are ended at once


def test_witnesses_that_all_finish_stop_nothing():
    stopped = []
    rows = list(_side_by_side([(_fake("w0"), None)], lambda w, _p, _ui: Row(w.name, w.case, 1, 1),
                              2, Ui(quiet=True), lambda: stopped.append(True)))
    assert [r.variant for r in rows] == ["w0"] and not stopped
