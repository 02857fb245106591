"""`lab fsx`: options checked before any build, and the soak's summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import usage
from lab.errors import ConfigError
from lab.jobs import soak
from lab.suite import fsx


def parse(*argv: str):
    return usage.build_parser().parse_args(["fsx", *argv])


def test_the_command_line_becomes_checked_options():
    options, server = soak.options_from(parse("--seed", "7", "--threads", "8", "--files", "3",
                                                 "--ops", "write, append", "--delay-write-us",
                                                 "500"))
    assert options == fsx.FsxOptions(seed=7, threads=8, files=3, ops=("write", "append"))
    assert server.delay_write_us == 500


@pytest.mark.parametrize("argv, message", [
    (("--duration", "0"), "--duration must be more than 0"),
    (("--chunk", "-1"), "--chunk must be more than 0"),
    (("--threads", "65"), "--threads must be 1..64"),
    (("--files", "0"), "--files must be 1..8"),
    (("--ops", "write,teleport"), "--ops has unknown kinds teleport"),
    (("--delay-write-us", "-5"), "--delay-write-us must be 0 or more"),
    (("--seed", "-1"), "--seed must be"),
])
def test_bad_options_are_refused(argv, message):
    with pytest.raises(ConfigError, match=message):
        soak.options_from(parse(*argv))


def test_bad_options_exit_2_before_any_build(tmp_path):
    """The lab's own CLI, as a user runs it: nothing is built, no results folder."""
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "fsx", "--ops", "nope",
                           "--results", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "--ops has unknown kinds nope" in proc.stderr
    assert not (tmp_path / "out").exists()


def _result(seed: int, ok: bool) -> fsx.FsxResult:
    kinds = {k: {"done": 10, "skipped": 0, "busy_s": 0.1} for k in fsx.KINDS}
    failure = None if ok else {
        "type": "mismatch", "what": "the tail differs", "thread": 1, "op": 0,
        "kind": "epoch-check", "file": 0, "path": "/mnt/fsx/fsx.2.0", "offset": 9000,
        "bytes_at": 8992, "expected": "00 01", "expected_is": "x", "actual": "00 02",
        "actual_is": "y"}
    return fsx.parse_fsx(json.dumps({
        "tool": "labfsx", "result": "pass" if ok else "fail", "seed": seed,
        "reproduce": f"labfsx --dir=/mnt/fsx --seed={seed}", "elapsed_s": 2.0, "epochs": 3,
        "kinds": kinds, "check_busy_s": 0.5, "ops": 120, "skipped": 0, "ops_per_s": 60.0,
        "notes": {"mmap_shared_refused": 4, "odirect_open": "ok",
                  "fallocate_unsupported": {"punch-hole": 0}},
        "injected": None, "failure": failure,
        "history": {"0": [{"op": 3, "kind": "append", "sub": None, "file": 0, "offset": 9000,
                           "length": 32, "result": "32"}]} if failure else None}))


def test_a_soak_summary_names_the_failing_seed_and_its_replay():
    passed = soak.Soak("baseline", (_result(1, True), _result(2, True)))
    assert passed.passed
    assert passed.summary() == "baseline: 2 runs, 240 ops in 4s (60/s), 0 skipped; passed"
    failed = soak.Soak("patched", (_result(1, True), _result(2, False)))
    assert not failed.passed
    text = failed.summary()
    assert "FAILED seed 2: mismatch in thread 1 op 0 (epoch-check), file 0 at offset 9000" in text
    assert "replay in the guest: labfsx --dir=/mnt/fsx --seed=2" in text
    crashed = soak.Soak("v1", (), "kernel BUG at fs/fuse/file.c:1650!\nstack")
    assert not crashed.passed and crashed.summary().endswith("FAILED: kernel BUG at "
                                                             "fs/fuse/file.c:1650!")
    report = failed.runs[1].failure.report()
    assert "expected 00 01  (x)" in report and "#3 append f0 9000 32 -> 32" in report


def test_skip_reasons_add_up_over_runs():
    assert fsx.skip_reasons([_result(1, True), _result(2, True)]) == [
        "MAP_SHARED refused 8x, MAP_PRIVATE used"]


@pytest.mark.parametrize("total, chunk, message", [
    (0, 1, "--duration must be more than 0 seconds, not 0"),
    (10, -1, "--chunk must be more than 0 seconds, not -1"),
    (float("nan"), 1, "--duration must be more than 0 seconds, not nan"),
])
def test_the_soak_bounds_are_one_check_for_the_cli_and_the_soak(total, chunk, message):
    """options_from (before any build) and fsx.soak (the library) say the same."""
    with pytest.raises(ConfigError, match=message):
        soak.options_from(parse("--duration", str(total), "--chunk", str(chunk)))
    with pytest.raises(ConfigError, match=message):
        fsx.soak(None, "/unused", fsx.FsxOptions(), total, chunk)  # type: ignore[arg-type]
