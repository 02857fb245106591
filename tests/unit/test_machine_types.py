"""The QEMU command line for each machine type, and a boot's phase record."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.vm.machine import BootTimes, Machine
from lab.vm.qemu_argv import Accel, MachineSpec, kernel_cmdline, machine_option, qemu_argv


def _argv(tmp: Path, machine_type: str) -> list[str]:
    spec = MachineSpec("v", tmp / "vmlinux", tmp / "root.ext4", machine_type=machine_type)
    return qemu_argv(spec, Accel("tcg", "test"), overlay=tmp / "o.qcow2", qmp=tmp / "q.sock",
                     console_log=tmp / "c.log", ssh_port=2222)


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def test_pc_puts_virtio_on_pci_and_skips_acpi_irq_links(tmp_path):
    argv = _argv(tmp_path, "pc")
    assert argv[argv.index("-machine") + 1] == "pc"
    assert _devices(argv) == ["virtio-blk-pci,drive=root", "virtio-net-pci,netdev=net0",
                              "virtio-rng-pci"]
    cmdline = argv[argv.index("-append") + 1].split()
    assert "acpi=noirq" in cmdline and "pci=off" not in cmdline
    assert {"i8042.noaux", "i8042.nokbd", "i8042.nopnp", "8250.nr_uarts=1"} <= set(cmdline)


def test_microvm_puts_virtio_on_mmio_without_pci(tmp_path):
    argv = _argv(tmp_path, "microvm")
    machine = argv[argv.index("-machine") + 1].split(",")
    assert machine[0] == "microvm"
    # ACPI is how the guest powers off; the PIT and PIC are how its timer starts.
    assert {"acpi=on", "pit=on", "pic=on"} <= set(machine)
    assert _devices(argv) == ["virtio-blk-device,drive=root", "virtio-net-device,netdev=net0",
                              "virtio-rng-device"]
    cmdline = argv[argv.index("-append") + 1].split()
    assert "pci=off" in cmdline and "acpi=noirq" not in cmdline


@pytest.mark.parametrize("machine_type", ["pc", "microvm"])
def test_both_types_boot_the_overlay_with_our_init(tmp_path, machine_type):
    argv = _argv(tmp_path, machine_type)
    drive = argv[argv.index("-drive") + 1]
    assert drive.startswith(f"id=root,file={tmp_path}/o.qcow2,if=none,")
    assert str(tmp_path / "root.ext4") not in " ".join(argv)
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinux")
    spec = MachineSpec("v", tmp_path / "k", tmp_path / "r", machine_type=machine_type,
                       cmdline_extra=("quiet",))
    words = kernel_cmdline(spec).split()
    assert words[:4] == ["console=ttyS0", "root=/dev/vda", "rw", "init=/sbin/lab-init"]
    assert words[-1] == "quiet"  # the caller's extras come last and win
    assert machine_option(spec).split(",")[0] == machine_type


def test_the_default_machine_is_pc_and_unknown_types_are_refused(tmp_path):
    assert MachineSpec("v", tmp_path / "k", tmp_path / "r").machine_type == "pc"
    with pytest.raises(ValueError, match="q35"):
        MachineSpec("v", tmp_path / "k", tmp_path / "r", machine_type="q35")


def test_microvm_under_tcg_is_refused_before_qemu_starts(tmp_path):
    spec = MachineSpec("v", tmp_path / "k", tmp_path / "r", machine_type="microvm")
    vm = Machine(spec, Accel("tcg", "test"), log_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs KVM"):
        vm.launch()
    assert vm.pid is None and not vm.console_log.exists()


def test_boot_times_add_up_and_report_a_missing_ssh_phase():
    times = BootTimes("pc", qemu_s=0.25, kernel_s=1.5, init_s=0.75)
    assert times.to_ready_s == 2.5
    assert times.total_s is None and times.to_dict()["ssh_s"] is None
    done = BootTimes("pc", qemu_s=0.25, kernel_s=1.5, init_s=0.75, ssh_s=0.5)
    assert done.total_s == 3.0
    assert done.to_dict() == {"machine_type": "pc", "qemu_s": 0.25, "handshake_s": 0.0,
                              "kernel_s": 1.5, "init_s": 0.75, "ssh_s": 0.5, "total_s": 3.0}
    assert done.describe() == "pc: qemu 0.25 (qmp 0.00), kernel 1.50, init 0.75, ssh 0.50"
