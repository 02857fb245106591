"""labfsx on the host, on a plain directory: its model never reports a legal
run, and corruption (its own --inject, or an LD_PRELOAD shim playing a broken
file system) is always reported with the seed, the bad bytes and the
threads' last operations. Also the Python side: options, parsing, soaks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from lab.errors import ConfigError, ParseError
from lab.guest import workloads
from lab.host.proc import CommandResult
from lab.suite import fsx

SRC = workloads.GUEST_SRC
DATA = Path(__file__).resolve().parent.parent / "data" / "fsx"


@pytest.fixture(scope="session")
def labfsx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labfsx built on the host the way the guest's Makefile builds it, plus -Werror."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("labfsx") / "labfsx"
    subprocess.run(["gcc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(out),
                    str(SRC / "labfsx.c")], check=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory, labfsx: Path) -> Path:
    out = tmp_path_factory.mktemp("shim") / "corrupt_shim.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(out),
                    str(DATA / "corrupt_shim.c"), "-ldl"], check=True, timeout=120)
    return out


def run(binary: Path, directory: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> tuple[int, fsx.FsxResult | None, str]:
    proc = subprocess.run([str(binary), f"--dir={directory}", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    result = fsx.parse_fsx(proc.stdout) if proc.returncode in (0, 1) else None
    return proc.returncode, result, proc.stderr


# --- legal runs pass ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--threads=1", "--files=1", "--max-ops=2000", "--duration=60"),
    ("--threads=4", "--files=2", "--seed=7", "--duration=1"),
    ("--threads=8", "--files=3", "--seed=42", "--epoch=5", "--duration=1"),
    ("--threads=3", "--seed=9", "--epoch=200", "--region=16k", "--shared=8k", "--duration=1"),
    ("--threads=6", "--seed=11", "--ops=shared-write,shared-read,append,truncate",
     "--duration=1"),
], ids=["one-thread", "default", "short-epochs", "long-epochs-small-regions", "races-only"])
def test_legal_runs_are_never_reported(labfsx, tmp_path, args):
    rc, result, stderr = run(labfsx, tmp_path, *args)
    assert rc == 0, stderr
    assert result is not None and result.passed and result.failure is None
    assert result.ops > 100 and result.epochs >= 1
    assert result.kinds["shared-write"].done + result.kinds["write"].done > 0
    assert list(tmp_path.iterdir()) == []  # a passing run cleans up


def test_every_kind_runs_on_a_local_file_system(labfsx, tmp_path):
    rc, result, stderr = run(labfsx, tmp_path, "--threads=4", "--duration=1")
    assert rc == 0, stderr
    assert result is not None
    assert {k for k, c in result.kinds.items() if c.done} == set(fsx.KINDS)
    assert result.ops == sum(c.done for c in result.kinds.values())
    assert result.ops_per_s > 0 and result.odirect_open == "ok"


def test_the_same_seed_replays_the_same_operation_stream(labfsx, tmp_path):
    """Per thread, the kinds drawn depend only on seed and options; with one
    thread even the bytes are the same."""
    def kinds(*args: str) -> tuple[dict, int]:
        rc, result, stderr = run(labfsx, tmp_path, "--duration=60", *args)
        assert rc == 0 and result is not None, stderr
        return {k: c.done for k, c in result.kinds.items()}, result.ops

    one = ("--threads=1", "--max-ops=640", "--seed=5")
    assert kinds(*one) == kinds(*one)
    four = ("--threads=4", "--max-ops=320", "--seed=5")
    assert kinds(*four) == kinds(*four)
    assert kinds(*four) != kinds("--threads=4", "--max-ops=320", "--seed=6")


def test_unsupported_operations_are_skipped_and_counted(labfsx):
    """tmpfs has no FALLOC_FL_ZERO_RANGE: those fallocates are skipped, counted."""
    shm = Path("/dev/shm")
    if not any(line.split()[1:3] == ["/dev/shm", "tmpfs"]
               for line in Path("/proc/mounts").read_text().splitlines()):
        pytest.skip("no tmpfs at /dev/shm")
    directory = Path(tempfile.mkdtemp(dir=shm, prefix="labfsx-"))
    try:
        rc, result, stderr = run(labfsx, directory, "--ops=fallocate,read", "--duration=0.5")
    finally:
        shutil.rmtree(directory)
    assert rc == 0, stderr
    assert result is not None and result.passed
    assert result.fallocate_unsupported["zero-range"] > 0
    assert result.kinds["fallocate"].skipped == result.fallocate_unsupported["zero-range"]
    assert result.skipped >= result.kinds["fallocate"].skipped


# --- corruption is reported ---------------------------------------------------------


@pytest.mark.parametrize("inject, threads, words", [
    ("flip", 4, ["private region differs"]),
    ("misplace", 4, ["private region differs"]),
    ("lose", 4, ["private region differs"]),
    ("duplicate", 4, ["twice", "the extra bytes hold unit 0"]),
    ("tear", 1, ["none of the writes that may have landed last"]),
    ("size", 4, ["size"]),
])
def test_injected_corruption_is_reported(labfsx, tmp_path, inject, threads, words):
    rc, result, stderr = run(labfsx, tmp_path, f"--inject={inject}", "--inject-at=10",
                             f"--threads={threads}", "--seed=3", "--duration=30")
    assert rc == 1
    assert result is not None and result.result == "fail" and result.failure is not None
    assert result.injected is not None and result.injected["kind"] == inject
    f = result.failure
    assert f.type == "mismatch" and any(w in f.what for w in words), f.what
    # the report: seed and options, every thread's last operations
    assert "--seed=3" in result.reproduce and f"--inject={inject}" in result.reproduce
    assert sorted(f.history) == list(range(threads))
    assert all(0 < len(ops) <= 16 for ops in f.history.values())
    assert "reproduce: labfsx" in stderr and "thread 0:" in stderr
    assert any(inject in (op.sub or "") for op in f.history[0])
    assert os.path.exists(f.path or "")  # a failed run keeps its files


def test_a_flipped_byte_is_shown_at_its_offset(labfsx, tmp_path):
    rc, result, stderr = run(labfsx, tmp_path, "--inject=flip", "--inject-at=1", "--seed=8",
                             "--threads=2", "--duration=30")
    assert rc == 1 and result is not None and result.failure is not None
    f = result.failure
    assert result.injected is not None and f.offset == result.injected["offset"]
    assert f.expected is not None and f.actual is not None and f.expected != f.actual
    exp, act = bytes.fromhex(f.expected.replace(" ", "")), bytes.fromhex(f.actual.replace(" ", ""))
    assert f.bytes_at is not None
    i = f.offset - f.bytes_at
    assert exp[:i] == act[:i] and exp[i] ^ act[i] == 0x5A
    assert f.expected_is and "private write by thread 0" in f.expected_is
    assert f"first bad offset {f.offset}" in stderr and "expected" in stderr


@pytest.mark.parametrize("mode, ops", [
    ("flip", "all"),
    ("drop", "all"),
    ("shift", "write,read,mmap-read"),  # plain fds: O_DIRECT refuses a shifted offset
])
def test_a_corrupting_file_system_is_caught(labfsx, shim, tmp_path, mode, ops):
    """The shim corrupts every pwrite from the 50th on, behind labfsx's back."""
    rc, result, stderr = run(labfsx, tmp_path, "--threads=4", f"--ops={ops}", "--duration=30",
                             env={"LD_PRELOAD": str(shim), "FSX_SHIM": mode,
                                  "FSX_SHIM_AT": "50"})
    assert rc == 1, stderr
    assert result is not None and result.failure is not None
    assert result.failure.type == "mismatch" and result.injected is None
    assert result.failure.offset is not None or "size" in result.failure.what


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ((), "missing --dir"),
    (("--dir=/tmp", "--threads=0"), "--threads must be 1..64"),
    (("--dir=/tmp", "--ops=write,scribble"), "unknown kind 'scribble'"),
    (("--dir=/tmp", "--region=1000"), "--region must be a multiple of 4096"),
    (("--dir=/tmp", "--seed=x"), "--seed: bad number 'x'"),
    (("--dir=/tmp", "--inject=tear", "--ops=write"), "--inject=tear needs --ops"),
    (("--dir=/tmp", "--duration=0"), "--duration=0 needs --max-ops"),
    (("--dir=/tmp", "--frobnicate=1"), "unknown option '--frobnicate'"),
])
def test_bad_options_exit_2_naming_the_option(labfsx, args, message):
    proc = subprocess.run([str(labfsx), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr and "usage: labfsx" in proc.stderr


def test_a_directory_that_cannot_be_used_exits_3(labfsx, tmp_path):
    proc = subprocess.run([str(labfsx), f"--dir={tmp_path}/missing"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 3
    out = json.loads(proc.stdout)
    assert out["result"] == "error" and "missing/fsx.1.0" in out["error"]


# --- the Python side ----------------------------------------------------------------


def test_options_render_the_command_line():
    o = fsx.FsxOptions(seed=9, threads=2, duration_s=1.5, ops=("write", "append"),
                       inject="tear", inject_at=4, keep=True)
    o.validate()
    assert o.argv("/mnt/x") == [
        fsx.BINARY, "--dir=/mnt/x", "--seed=9", "--threads=2", "--files=2", "--duration=1.5",
        "--epoch=32", "--hang-timeout=60", "--ops=write,append", "--inject=tear",
        "--inject-at=4", "--keep"]


@pytest.mark.parametrize("change, option", [
    ({"threads": 0}, "--threads"), ({"files": 9}, "--files"),
    ({"duration_s": 0}, "--duration"), ({"ops": ("write", "nope")}, "--ops"),
    ({"inject": "explode"}, "--inject"), ({"epoch": 0}, "--epoch"),
    ({"seed": -1}, "--seed"), ({"hang_timeout_s": 0}, "--hang-timeout"),
])
def test_bad_options_are_refused_on_the_host(change, option):
    with pytest.raises(ConfigError, match=option):
        replace(fsx.FsxOptions(), **change).validate()


def test_a_report_missing_a_field_is_a_parse_error(labfsx, tmp_path):
    proc = subprocess.run([str(labfsx), f"--dir={tmp_path}", "--duration=0.2"],
                          capture_output=True, text=True, timeout=60)
    data = json.loads(proc.stdout)
    del data["kinds"]
    with pytest.raises(ParseError, match="'kinds'"):
        fsx.parse_fsx(json.dumps(data))
    with pytest.raises(ParseError, match="not JSON"):
        fsx.parse_fsx("labfsx: crashed")


class HostGuest:
    """Runs labfsx on this machine where the lab would run it in a guest."""

    class machine:  # noqa: N801 - the attribute Guest has
        scale = 1.0

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.argvs: list[list[str]] = []

    def run(self, argv, *, timeout: float, scale: bool = True, check: bool = False):
        argv = [str(self.binary), *argv[1:]]
        self.argvs.append(argv)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return CommandResult(" ".join(argv), p.returncode, p.stdout, p.stderr, 0.0)


def test_a_soak_runs_consecutive_seeds_and_stops_at_a_failure(labfsx, tmp_path):
    guest = HostGuest(labfsx)
    seen: list[tuple[int, int]] = []
    results = fsx.soak(guest, str(tmp_path), fsx.FsxOptions(seed=10, threads=2), total_s=1.0,
                       chunk_s=0.4, on_run=lambda i, n, r: seen.append((i, n)))
    assert [r.seed for r in results] == [10, 11, 12] and all(r.passed for r in results)
    assert seen == [(0, 3), (1, 3), (2, 3)]
    assert "--duration=0.2" in guest.argvs[-1]
    failing = fsx.FsxOptions(seed=1, threads=2, inject="flip")
    results = fsx.soak(guest, str(tmp_path), failing, total_s=3, chunk_s=1)
    assert len(results) == 1 and not results[0].passed


def test_run_fsx_raises_when_labfsx_cannot_start(labfsx, tmp_path):
    from lab.errors import GuestError

    with pytest.raises(GuestError, match="exit 3"):
        fsx.run_fsx(HostGuest(labfsx), str(tmp_path / "missing"), fsx.FsxOptions())
