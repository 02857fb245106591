"""labprobe built and run on the host, on a local folder: the JSON it prints
parses into the typed records, and each write submission mode reaches the
kernel (O_DIRECT needs a file system that has it, so only plain and AIO here).
The FUSE semantics are the VM tests' business."""
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab.guest import records, workloads

SRC = workloads.GUEST_SRC


@pytest.fixture(scope="session")
def labprobe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labprobe built the way the guest's Makefile builds it, plus -Werror."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("labprobe") / "labprobe"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(out),
                    str(SRC / "labprobe.c")], check=True, timeout=120)
    return out


def pwrite(labprobe: Path, *args: str) -> tuple[dict, records.ProbeResult]:
    run = subprocess.run([str(labprobe), "pwrite", *args], capture_output=True, text=True,
                         timeout=60, check=True)
    data = json.loads(run.stdout)
    return data, records.parse_probe(data, "labprobe pwrite")


@pytest.mark.parametrize("aio", [False, True], ids=["pwrite", "aio"])
def test_writers_land_where_they_say_and_verify(labprobe, tmp_path, aio):
    f = tmp_path / "f"
    data, result = pwrite(labprobe, f"--file={f}", "--writers=4", "--block=64k", "--verify",
                          *(["--aio"] if aio else []))
    assert data["aio"] is aio
    assert [w.ret for w in result.writers] == [65536] * 4
    assert sorted(w.offset for w in result.writers) == [0, 65536, 131072, 196608]
    assert result.final_size == f.stat().st_size == 4 * 65536
    assert result.verify_ok is True and not result.bad_blocks


@pytest.mark.parametrize("aio", [False, True], ids=["pwrite", "aio"])
def test_a_failed_write_reports_its_errno(labprobe, tmp_path, aio):
    # RLIMIT_FSIZE at one block: writer 0 fits, writer 1 starts at the limit.
    _, result = pwrite(labprobe, f"--file={tmp_path / 'f'}", "--writers=2", "--block=64k",
                       "--rlimit-fsize=65536", *(["--aio"] if aio else []))
    by_offset = {w.offset: w for w in result.writers}
    assert by_offset[0].ret == 65536
    assert by_offset[65536].ret < 0 and by_offset[65536].errno_name == "EFBIG"


def test_aio_is_a_flag_of_pwrite_only(labprobe, tmp_path):
    run = subprocess.run([str(labprobe), "append", f"--file={tmp_path / 'f'}", "--writers=1",
                          "--records=1", "--record=64", "--aio"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "'--aio' not valid here" in run.stderr


def test_mmap_maps_the_first_page_before_the_writers_run(labprobe, tmp_path):
    f = tmp_path / "f"
    pwrite(labprobe, f"--file={f}", "--writers=1", "--block=64k")  # writer 0's pattern
    _, result = pwrite(labprobe, f"--file={f}", "--writers=4", "--block=16k", "--mmap")
    mm = result.mmap
    assert mm is not None
    # A local file system allows both mappings; the page still holds the
    # first run's word at offset 0: tag 1, offset 0.
    assert (mm.open_errno, mm.shared_errno, mm.private_errno) == (None, None, None)
    assert mm.first_word == 1 << 48
    assert [w.ret for w in result.writers] == [16384] * 4


def test_without_mmap_there_is_no_mmap_record(labprobe, tmp_path):
    _, result = pwrite(labprobe, f"--file={tmp_path / 'f'}", "--writers=1", "--block=4k")
    assert result.mmap is None


def _arrivals_after(path: Path, delay_s: float) -> threading.Thread:
    """Stand in for labfs --arrivals: the count goes from 0 to 1 after delay_s."""
    path.write_bytes((0).to_bytes(8, "little"))

    def bump() -> None:
        time.sleep(delay_s)
        # replaced whole, as labfs's pwrite of 8 bytes is: never seen empty
        tmp = path.with_suffix(".new")
        tmp.write_bytes((1).to_bytes(8, "little"))
        tmp.replace(path)

    t = threading.Thread(target=bump)
    t.start()
    return t


@pytest.mark.parametrize("action", ["--gate-open", "--flip-direct"])
def test_gate_actions_report_what_they_saw(labprobe, tmp_path, action):
    # Nothing waits on a lock on a local file system: the open returns at once
    # and writer 1 finishes, so neither is (normally) seen waiting, which the VM
    # cases call inconclusive; the late writer runs all the same.
    bump = _arrivals_after(tmp_path / "arrivals", 0.2)
    data, result = pwrite(labprobe, f"--file={tmp_path / 'f'}", "--writers=2", "--block=4k",
                          f"--gate={tmp_path / 'arrivals'}", "--gate-after=1", action)
    bump.join()
    gate = result.gate
    assert gate is not None and not gate.timed_out
    assert [w.ret for w in result.writers] == [4096, 4096]
    if action == "--gate-open":
        assert gate.open is not None and gate.flip is None
        assert gate.open.errno_name is None
        assert gate.open.end_ms >= gate.open.start_ms
        # a task seen in D twice in a row on a busy disk is rare, but allowed
        assert (gate.open.blocked_ms >= gate.open.start_ms) is gate.open.blocked
        # writer 1 starts only after the open was made
        assert result.writers[1].start_ms >= gate.open.start_ms
    else:
        assert gate.flip is not None and gate.open is None
        assert gate.flip.flipped == int(gate.flip.blocked)
        assert (gate.flip.flipped_ms >= 0) is gate.flip.blocked
    assert set(data["gate"]) >= {"after", "timed_out", "opened_ms"}


def test_gate_actions_need_a_gate(labprobe, tmp_path):
    run = subprocess.run([str(labprobe), "pwrite", f"--file={tmp_path / 'f'}", "--writers=2",
                          "--block=4k", "--flip-direct"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "give --gate" in run.stderr


def test_trunc_open_reports_the_open_and_the_writers(labprobe, tmp_path):
    # On a local file system no server holds the truncating open: it returns
    # at once, so it was never held (inconclusive in the VM case), and the
    # writers run after it all the same.
    (tmp_path / "arrivals").write_bytes(bytes(16))
    data, result = pwrite(labprobe, f"--file={tmp_path / 'f'}", "--writers=2", "--block=4k",
                          "--presize=8k", f"--gate={tmp_path / 'arrivals'}", "--trunc-open")
    opened = result.trunc_open
    assert opened is not None and result.gate is None and data["gate"] is None
    assert not opened.held and opened.errno_name is None
    assert opened.end_ms >= opened.start_ms
    assert opened.writers_blocked == 0 and opened.blocked_ms == -1
    assert [w.ret for w in result.writers] == [4096, 4096]
    assert all(w.start_ms >= opened.start_ms for w in result.writers)
    assert result.final_size == 8192


@pytest.mark.parametrize("extra", [[], ["--gate-after=1"]], ids=["no-gate", "gate-after"])
def test_trunc_open_needs_the_arrivals_and_no_gate_after(labprobe, tmp_path, extra):
    gate = [f"--gate={tmp_path / 'arrivals'}"] if extra else []
    run = subprocess.run([str(labprobe), "pwrite", f"--file={tmp_path / 'f'}", "--writers=2",
                          "--block=4k", "--trunc-open", *gate, *extra], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "--trunc-open waits on the server's arrivals" in run.stderr


@pytest.mark.parametrize("action", ["--gate-open", "--flip-direct"])
def test_trunc_open_is_no_gate_action(labprobe, tmp_path, action):
    run = subprocess.run([str(labprobe), "pwrite", f"--file={tmp_path / 'f'}", "--writers=2",
                          "--block=4k", f"--gate={tmp_path / 'arrivals'}", "--trunc-open",
                          action], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--trunc-open excludes" in run.stderr
