"""lab.proc with real processes: timeouts, failing readers, children that die
with the lab whatever kills it, locks that outlive a dead holder's children."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.errors import BuildError, LabError
from lab.host import cache, proc, reaper

REPO = Path(__file__).resolve().parents[2]


def _session_members(sid: int) -> list[int]:
    return reaper.members({sid})


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_captures_output_and_exit_status(tmp_path):
    log = tmp_path / "logs" / "x.log"
    res = proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30, log_path=log,
                   check=False)
    assert res.exit_status == 3
    assert res.stdout == "out\nerr\n"
    assert "$ sh -c" in log.read_text() and "[exit 3" in log.read_text()
    with pytest.raises(BuildError, match="failed with exit status 3") as info:
        proc.run(["sh", "-c", "echo why; exit 3"], timeout=30, error=BuildError)
    assert "why" in info.value.excerpt


def test_timeout_kills_the_whole_group(tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    with pytest.raises(LabError, match="timed out"):
        proc.run(["sh", "-c", f"sleep 300 & echo $! > {pids}; sleep 300"], timeout=1)
    assert time.monotonic() - start < 60
    grandchild = int(pids.read_text())
    _wait_for(lambda: not reaper.alive(grandchild, reaper.proc_stat(grandchild)[2])
              if reaper.proc_stat(grandchild) else True, 10, "the backgrounded sleep to die")


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_nonsense_timeouts_are_refused(bad):
    with pytest.raises(ValueError, match="timeout"):
        proc.run(["true"], timeout=bad)


def test_reader_failure_fails_the_command_at_once():
    """A full disk under the log (here: the callback's ENOSPC) must not wait out the timeout."""
    def full(_line: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    start = time.monotonic()
    with pytest.raises(LabError, match="No space left") as info:
        proc.run(["sh", "-c", "while :; do echo spam; done"], timeout=600, on_line=full)
    elapsed = time.monotonic() - start
    print(f"reader failure stopped the command after {elapsed:.2f}s")
    assert elapsed < 60  # far from the 600 s timeout: it failed at once
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a real full filesystem needs a private tmpfs mount (root)")
def test_full_disk_under_the_log_fails_the_command_at_once(tmp_path):
    """A real full filesystem: a 64 KiB tmpfs in a private mount namespace."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from lab.host import proc
        from lab.errors import LabError
        start = time.monotonic()
        try:
            proc.run(["sh", "-c", "while :; do echo 0123456789abcdef; done"], timeout=600,
                     log_path=Path("{mnt}/build.log"))
        except LabError as exc:
            print("FAILED", f"{{time.monotonic() - start:.2f}}", exc)
    """)
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o size=64k none "{mnt}" && exec "$0" -c "$1"', sys.executable,
         script],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "FAILED" in out.stdout, out.stdout + out.stderr
    assert "No space left on device" in out.stdout
    seconds = float(out.stdout.split()[1])
    print(f"full disk stopped the command after {seconds:.2f}s")
    assert seconds < 60


def test_spawned_child_is_stopped_with_its_group(tmp_path):
    pids = tmp_path / "pids"
    with proc.spawn(["sh", "-c", f"sleep 300 & echo $! > {pids}; exec sleep 300"],
                    output=tmp_path / "out.log") as child:
        _wait_for(pids.exists, 10, "the child to start")
        assert child.poll() is None
        assert child.wait(0.1) is None
        sid = child.pid
        assert len(_session_members(sid)) == 2
    assert child.returncode is not None
    _wait_for(lambda: not _session_members(sid), 10, "the group to be gone")


def test_interactive_returns_the_exit_status():
    assert proc.interactive(["sh", "-c", "exit 5"], timeout=30) == 5
    with pytest.raises(LabError, match="still running"):
        proc.interactive(["sleep", "30"], timeout=0.5)


LAB_LIKE = """
import sys
from pathlib import Path
from lab.host import cache, proc, reaper_client

work = Path(sys.argv[1])
with cache.locked(work / "build.lock"):
    folder = reaper_client.private_dir("lab-proctest-")
    (work / "private").write_text(str(folder))
    (folder / "overlay").write_text("x")
    # make starts recipes through sh: the sleeps are the lab's grandchildren.
    proc.run(["make", "-j3", "-f", work / "Makefile", "a", "b", "c"], timeout=600,
             log_path=work / "make.log")
"""

MAKEFILE = """\
a b c:
\techo $$$$ >> {pids}; sleep 300
"""


def _start_lab_like(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    (tmp_path / "lab_like.py").write_text(LAB_LIKE)
    pids = tmp_path / "pids"
    (tmp_path / "Makefile").write_text(MAKEFILE.format(pids=pids))
    parent = subprocess.Popen([sys.executable, tmp_path / "lab_like.py", tmp_path], cwd=REPO,
                              start_new_session=True)
    _wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, 30,
              "three recipes to run")
    recipe = int(pids.read_text().split()[0])
    sid = reaper.proc_stat(recipe)[1]
    assert sid != os.getsid(0)  # the build runs in a session of its own
    return parent, sid


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_tree_dies_with_the_lab(sig, tmp_path):
    """kill -9 of a lab-like parent: make, its shells and their sleeps all die,
    the private folder goes, and the lock is free only once they are gone."""
    parent, sid = _start_lab_like(tmp_path)
    assert len(_session_members(sid)) >= 7  # make + 3 shells + 3 sleeps
    folder = Path((tmp_path / "private").read_text())
    assert folder.is_dir()
    start = time.monotonic()
    parent.send_signal(sig)
    parent.wait(timeout=30)
    with (tmp_path / "build.lock").open("a") as f:
        # Whenever the lock becomes free, nothing of the dead holder may be left.
        def free() -> bool:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _wait_for(free, 30, "the lock to be released")
        left = _session_members(sid)
        lock_s = time.monotonic() - start
    assert left == [], f"lock released while {left} still ran"
    _wait_for(lambda: not folder.exists(), 10, "the private folder to be removed")
    print(f"{sig.name}: tree gone and lock free {lock_s:.2f}s after the signal")


def test_waiting_for_a_lock_names_the_holder_and_honours_the_timeout(tmp_path, caplog):
    parent, _sid = _start_lab_like(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(LabError, match="gave up waiting") as info, \
                cache.locked(tmp_path / "build.lock", timeout=1):
            pass
        assert time.monotonic() - start < 30
        assert f"pid {parent.pid}" in str(info.value)
        assert "lab_like.py" in str(info.value)  # the holder's command
        assert "since" in str(info.value)
        assert any(f"held by pid {parent.pid}" in r.message for r in caplog.records)
    finally:
        parent.kill()
        parent.wait(timeout=30)


def test_lock_timeout_from_the_environment_is_checked(monkeypatch):
    monkeypatch.setenv("LAB_LOCK_TIMEOUT_S", "nan")
    with pytest.raises(LabError, match="LAB_LOCK_TIMEOUT_S"):
        cache.lock_timeout()
    monkeypatch.setenv("LAB_LOCK_TIMEOUT_S", "2.5")
    assert cache.lock_timeout() == 2.5


DEFERRED = """
import os, signal, sys, time
from lab.host import teardown

def term(signum, frame):
    raise SystemExit("terminated after teardown")

signal.signal(signal.SIGTERM, term)
try:
    with teardown.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        print("teardown finished", flush=True)
except KeyboardInterrupt:
    print("interrupted afterwards", flush=True)
"""


def test_signals_wait_until_teardown_is_done():
    out = subprocess.run([sys.executable, "-c", DEFERRED], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.splitlines() == ["teardown finished", "interrupted afterwards"]


DAEMON_LAB = """
import sys, time
from pathlib import Path
from lab.host import proc

work = Path(sys.argv[1])
# A child that starts a daemon in a session of its own (setsid), then exits:
# the daemon is in none of the lab's sessions, only its environment says whose it is.
# The child waits until the daemon has left (its pid written), or the child's
# own group kill at its end could catch it before setsid.
proc.run(["sh", "-c", f"setsid sh -c 'echo $$ > {work}/daemon; exec sleep 300' "
          f"</dev/null >/dev/null 2>&1 & while [ ! -s {work}/daemon ]; do sleep 0.05; done"],
         timeout=60)
while not (work / "daemon").exists():
    time.sleep(0.05)
time.sleep(300)
"""


def test_a_descendant_that_left_the_labs_sessions_dies_with_the_lab(tmp_path):
    (tmp_path / "daemon_lab.py").write_text(DAEMON_LAB)
    parent = subprocess.Popen([sys.executable, tmp_path / "daemon_lab.py", tmp_path], cwd=REPO,
                              start_new_session=True)
    _wait_for(lambda: (tmp_path / "daemon").exists() and (tmp_path / "daemon").read_text(),
              30, "the daemon to start")
    daemon = int((tmp_path / "daemon").read_text())
    assert reaper.proc_stat(daemon)[1] == daemon  # a session of its own: setsid
    parent.kill()
    parent.wait(timeout=30)
    _wait_for(lambda: reaper.proc_stat(daemon) in (None,) or
              reaper.proc_stat(daemon)[0] == "Z", 30, "the daemon to be killed")
