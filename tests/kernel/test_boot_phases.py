"""A real boot of the default machine type records its phases, in order."""

from __future__ import annotations

import time

import pytest

from lab import pipeline
from lab.vm.machine import Machine
from lab.vm.ssh import Guest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]


def test_a_boot_records_its_phases_in_order(lab_cfg, builds, image, accel, logs, no_qemu_leak):
    spec = pipeline.machine_spec(lab_cfg, builds["baseline"], image, name="t-phases")
    # The kernel QEMU enters directly (no bzImage decompression) when kept.
    assert spec.kernel == builds["baseline"].boot_image
    started = time.monotonic()
    with Machine(spec, accel, log_dir=logs, boot_timeout_s=lab_cfg.vm.boot_timeout_s) as vm:
        ready = vm.boot_times
        assert ready is not None and ready.ssh_s is None  # no SSH session yet
        with Guest(vm, image) as guest:
            assert guest.run(["true"]).ok
            wall = time.monotonic() - started
            vm.shutdown(poweroff=guest.poweroff)
    times = vm.boot_times
    assert times is not None and times.machine_type == lab_cfg.vm.machine
    # Every phase was seen (its console line, or the SSH session) and took time.
    phases = [times.qemu_s, times.kernel_s, times.init_s, times.ssh_s]
    assert all(p is not None and p > 0 for p in phases), times
    # They follow one another: together they are the boot, within the wall
    # time measured around it (which also holds the overlay and the command).
    assert times.to_ready_s == pytest.approx(vm.boot_seconds, abs=0.01)
    assert times.total_s is not None and vm.boot_seconds < times.total_s <= wall
    console = vm.console_log.read_text()
    banner = console.index("Linux version ")
    init = console.index("as init process", banner)
    assert console.index("KERNEL-LAB-READY", init) > init
    assert vm.ended_by == "poweroff"
