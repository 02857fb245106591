"""Real QEMU guests: boot, SSH, QMP, the shutdown ladder, crashes, cleanup."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab import pipeline
from lab.errors import BootError, KernelCrash
from lab.vm.machine import Machine
from lab.vm.ssh import Guest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]


def _machine(lab_cfg, builds, image, accel, logs, name="baseline", **changes):
    spec = pipeline.machine_spec(lab_cfg, builds[name], image, name=f"t-{name}")
    return Machine(dataclasses.replace(spec, **changes), accel, log_dir=logs,
                   boot_timeout_s=lab_cfg.vm.boot_timeout_s)


def test_boot_ssh_and_graceful_poweroff(lab_cfg, builds, image, accel, logs, no_qemu_leak):
    with _machine(lab_cfg, builds, image, accel, logs) as vm:
        private_dir = vm._dir
        assert vm.status() == "running"
        assert oct(private_dir.stat().st_mode & 0o777) == "0o700"
        guest = Guest(vm, image)
        guest.connect()
        result = guest.run(["uname", "-r"], check=True)
        assert result.stdout.strip() == builds["baseline"].release
        assert guest.run("exit 7").exit_status == 7
        vm.shutdown(poweroff=guest.poweroff)
        guest.close()
    assert vm.ended_by == "poweroff"
    assert not private_dir.exists()  # overlay and QMP socket are gone


def test_shutdown_ladder_reaches_sigkill_when_qemu_is_stuck(
        lab_cfg, builds, image, accel, logs, no_qemu_leak):
    """A stopped QEMU answers neither QMP nor SIGTERM: the ladder must end in SIGKILL."""
    with _machine(lab_cfg, builds, image, accel, logs) as vm:
        os.kill(vm.pid, signal.SIGSTOP)
    assert vm.ended_by == "sigkill"
    assert not vm.is_running()


def test_shutdown_without_guest_uses_qmp_quit(lab_cfg, builds, image, accel, logs, no_qemu_leak):
    with _machine(lab_cfg, builds, image, accel, logs) as vm:
        pass
    assert vm.ended_by == "quit"
    vm.shutdown()  # idempotent


def test_guest_panic_is_reported_with_the_console_excerpt(
        lab_cfg, builds, image, accel, logs, no_qemu_leak):
    with _machine(lab_cfg, builds, image, accel, logs) as vm, Guest(vm, image) as guest, \
            pytest.raises(KernelCrash) as info:
        guest.run("echo c > /proc/sysrq-trigger; sleep 60", timeout=60)
    assert "Kernel panic" in info.value.excerpt
    assert "sysrq" in info.value.excerpt.lower()


def test_killed_qemu_is_reported_not_a_hang(lab_cfg, builds, image, accel, logs, no_qemu_leak):
    with _machine(lab_cfg, builds, image, accel, logs) as vm, Guest(vm, image) as guest:
        os.kill(vm.pid, signal.SIGKILL)
        with pytest.raises(BootError, match="QEMU exited"):
            guest.run("sleep 30", timeout=60)


def test_boot_timeout_shows_the_last_console_lines(lab_cfg, builds, image, accel, logs,
                                                    no_qemu_leak):
    vm = _machine(lab_cfg, builds, image, accel, logs)
    vm.boot_timeout_s = 0.5
    with pytest.raises(BootError, match="no ready marker") as info:
        vm.__enter__()
    assert info.value.log_path == vm.console_log
    assert not vm.is_running()


def test_broken_init_is_a_kernel_crash_during_boot(lab_cfg, builds, image, accel, logs,
                                                   no_qemu_leak):
    with pytest.raises(KernelCrash, match="during boot|panic") as info, _machine(
            lab_cfg, builds, image, accel, logs, cmdline_extra=("init=/bin/false",)):
        pass
    assert "Attempted to kill init" in info.value.excerpt


def test_two_variants_side_by_side(fleet, builds):
    vm_b, guest_b = fleet("baseline")
    vm_p, guest_p = fleet("patched")
    assert vm_b.ssh_port != vm_p.ssh_port
    assert guest_b.run(["uname", "-r"], check=True).stdout.strip() == builds["baseline"].release
    assert guest_p.run(["uname", "-r"], check=True).stdout.strip() == builds["patched"].release


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_lab_boot_leaves_nothing_running(sig, builds, image, no_qemu_leak, tmp_path):
    """`lab boot` until Ctrl-C (or SIGTERM): QEMU, overlay and socket all go away."""
    out = tmp_path / "boot"
    tmp = Path(tempfile.gettempdir())  # where Machine makes its private folders
    before = set(tmp.glob("lab-baseline-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "boot", "baseline", "--results", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("ssh -i") or time.monotonic() > deadline:
            break
    assert any(line.startswith("ssh -i") for line in seen), "".join(seen)
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert set(tmp.glob("lab-baseline-*")) <= before  # no overlay or socket left
