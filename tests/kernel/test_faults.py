"""Fault injection with real processes: the lab killed or hung up on, signals
during teardown, unwritable results, bad lab.toml values, two builds at once.

Each test checks the clear error (or exit status), that no QEMU of ours is
left (`pgrep`; by pid, since other labs may run VMs beside these tests), and
that the VM's private /tmp/lab-* folder is gone. The
figures (seconds until QEMU and its folder are gone) are printed (`-s`).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import pipeline
from lab.host import cache, reaper

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]


class Lab:
    """`python -m lab.cli ...` in a session of its own (a signal reaches only it)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.popen = subprocess.Popen(
            [*(wrap or []), sys.executable, "-m", "lab.cli", *args], cwd=REPO,
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} from lab:\n" + "".join(self.seen))

    def finish(self, timeout: float) -> tuple[int, str]:
        code = self.popen.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader drain the pipe
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, "".join(self.seen)


def _qemu_for(results: Path) -> tuple[int, Path]:
    """Our QEMU (its console log is in `results`) and its private folder."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("qemu-system-x86_64") and any(
                str(results).replace(",", ",,") in a for a in argv):
            qmp = argv[argv.index("-qmp") + 1]
            sock = qmp.removeprefix("unix:").split(",server=")[0].replace(",,", ",")
            return int(entry), Path(sock).parent
    raise AssertionError(f"no QEMU with its console in {results}")


def _alive(pid: int) -> bool:
    st = reaper.proc_stat(pid)
    return st is not None and st[0] != "Z"


def _gone_within(predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("still there after the timeout")
        time.sleep(0.02)
    return time.monotonic() - start


def _pgrep_ours(qemu_pid: int) -> bool:
    out = subprocess.run(["pgrep", "-a", "qemu-system"], capture_output=True, text=True,
                         check=False).stdout
    return any(line.split()[0] == str(qemu_pid) for line in out.splitlines())


@pytest.fixture(scope="module")
def cached_baseline(builds, image):
    """The cached baseline kernel and the image, so `lab boot baseline` only boots."""
    return builds["baseline"]


def _boot(results: Path, *extra: str) -> tuple[Lab, int, Path]:
    lab = Lab("boot", "baseline", "--results", str(results), *extra)
    lab.wait_for("ssh -i", timeout=600)
    qemu_pid, private = _qemu_for(results)
    assert private.is_dir() and private.name.startswith("lab-baseline-")
    return lab, qemu_pid, private


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "SIGHUP"])
def test_lab_boot_killed_or_hung_up_leaves_nothing(sig, cached_baseline, tmp_path):
    # A comma in the results path: QEMU's option syntax must get it escaped.
    results = tmp_path / "boot,results"
    lab, qemu_pid, private = _boot(results)
    start = time.monotonic()
    lab.popen.send_signal(sig)
    qemu_s = _gone_within(lambda: not _alive(qemu_pid), 120)
    dir_s = _gone_within(lambda: not private.exists(), 60)
    code, output = lab.finish(timeout=120)
    print(f"\n{sig.name} of lab boot: QEMU gone after {qemu_s:.2f}s, "
          f"{private} gone after {time.monotonic() - start:.2f}s (dir wait {dir_s:.2f}s)")
    # A zombie QEMU still shows in pgrep until init reaps it.
    _gone_within(lambda: not _pgrep_ours(qemu_pid), 60)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:  # handled like SIGTERM: the whole ladder, starting with the guest's poweroff
        assert code == 130, output
        assert "interrupted" in output
        console = (results / "baseline.console.log").read_text(errors="replace")
        assert "reboot: Power down" in console  # the poweroff rung ran


def test_two_signals_during_teardown(cached_baseline, tmp_path):
    results = tmp_path / "boot"
    lab, qemu_pid, private = _boot(results)
    # A stopped QEMU answers neither the guest's poweroff nor QMP's quit, so
    # the teardown walks its ladder for seconds and the next two signals land
    # inside it (a healthy guest can be gone before a 0.3 s sleep ends).
    os.kill(qemu_pid, signal.SIGSTOP)
    lab.popen.send_signal(signal.SIGINT)
    time.sleep(0.3)
    lab.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    lab.popen.send_signal(signal.SIGINT)
    code, output = lab.finish(timeout=180)
    assert code == 130, output
    assert "SIGTERM during teardown: stopping the VM at once" in output
    assert not _alive(qemu_pid)
    _gone_within(lambda: not _pgrep_ours(qemu_pid), 60)
    assert not private.exists()


def test_poweroff_rung_runs_in_production(lab_cfg, builds, image, accel, logs):
    """pipeline.booted is how every command boots: its teardown powers off."""
    with pipeline.booted(lab_cfg, builds["baseline"], image, accel, logs,
                         name="t-poweroff") as (vm, guest):
        assert guest.run("true").ok
        private, qemu_pid = vm._dir, vm.pid
    assert vm.ended_by == "poweroff"
    assert qemu_pid is not None and not _alive(qemu_pid)
    assert private is not None and not private.exists()


def _in_private_mount(setup: str, *lab_args: str) -> subprocess.CompletedProcess:
    """Run `lab` in a private mount namespace after `setup` (root only)."""
    script = f'{setup} && exec "$0" -m lab.cli "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           sys.executable, *lab_args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


needs_root_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a read-only or full folder is made with a private mount (root)")


@needs_root_mounts
def test_read_only_results_folder_is_bad_input(cached_baseline, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = _in_private_mount(f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro}",
                            "boot", "baseline", "--results", str(ro / "run"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--results" in out.stderr and "Read-only file system" in out.stderr
    assert "Traceback" not in out.stderr


@needs_root_mounts
def test_full_results_folder_is_bad_input(cached_baseline, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    fill = f"mount -t tmpfs -o size=64k none {full} && (cat /dev/zero > {full}/fill || true)"
    out = _in_private_mount(fill, "boot", "baseline", "--results", str(full))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "No space left on device" in out.stderr


@pytest.mark.parametrize(("text", "key"), [('[bench]\njobs = ["4"]', "[bench] jobs[0]"),
                                           ("vm = 5", "[vm]"),
                                           ("[vm]\nboot_timeout_s = nan", "[vm] boot_timeout_s")])
def test_bad_lab_toml_stops_before_anything_starts(text, key, tmp_path):
    toml = tmp_path / "lab.toml"
    toml.write_text(text + "\n")
    out = subprocess.run([sys.executable, "-m", "lab.cli", "boot", "baseline", "--config",
                          str(toml), "--results", str(tmp_path / "r")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and key in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # nothing ran, not even the results folder


TRIVIAL_PATCH = """\
--- /dev/null
+++ b/lab-fault-{name}.txt
@@ -0,0 +1 @@
+{name}
"""


def _descendants(root: int) -> dict[int, int]:
    """pid -> start time of every process under `root`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                data = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(data[data.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            st = reaper.proc_stat(child)
            if st is not None:
                found[child] = st[2]
                todo.append(child)
    return found


def _held_by(locks: Path, pid: int) -> Path | None:
    for path in locks.glob("*.lock"):
        try:
            if json.loads(path.read_text() or "{}").get("pid") == pid:
                return path
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.timeout(2400)  # another lab's build may hold the source first, for minutes
def test_two_builds_at_once_say_who_holds_the_lock(cached_baseline, lab_cfg, tmp_path):
    """A second `lab build` of another variant waits for the first, says for
    whom (pid, command, since when) and gives up at its timeout; the first,
    stopped by SIGTERM mid-build, leaves no compiler behind."""
    patches = {}
    for name in ("a", "b"):
        patches[name] = tmp_path / f"{name}.patch"
        patches[name].write_text(TRIVIAL_PATCH.format(name=f"{name}-{os.getpid()}"))
    first = Lab("build", "--variant", "user", "--patch", str(patches["a"]),
                "--results", str(tmp_path / "a"))
    locks = lab_cfg.cache_root / "locks"
    deadline = time.monotonic() + 1800
    held = None
    while time.monotonic() < deadline and first.popen.poll() is None:
        held = _held_by(locks, first.popen.pid)
        if held is not None and _descendants(first.popen.pid):
            break  # it holds a lock and works under it
        time.sleep(0.1)
    assert held is not None, "the first build never took a lock"
    second = subprocess.run(
        [sys.executable, "-m", "lab.cli", "build", "--variant", "user", "--patch",
         str(patches["b"]), "--results", str(tmp_path / "b")],
        cwd=REPO, env={**os.environ, "LAB_LOCK_TIMEOUT_S": "3"}, capture_output=True, text=True,
        timeout=300)
    err = " ".join(second.stderr.split())  # rich wraps long lines
    print(f"\nsecond build: exit {second.returncode}: {err[-400:]}")
    assert second.returncode == 3, err
    assert f"held by pid {first.popen.pid}" in err
    assert "-m lab.cli build --variant user" in err  # the holder's command
    assert "since" in err and "gave up waiting" in err and "after 3s" in err
    tree = _descendants(first.popen.pid)
    first.popen.send_signal(signal.SIGTERM)
    code, output = first.finish(timeout=300)
    assert code in (0, 130), output  # 0 if the build won the race
    left = [p for p, start in tree.items() if reaper.alive(p, start)]
    assert left == [], f"left behind by the stopped build: {left}"
    with cache.locked(held, timeout=60):
        pass  # free again
