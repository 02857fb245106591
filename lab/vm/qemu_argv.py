"""QEMU's command line for a lab VM, as pure functions of typed values (unit-tested).

The machine (`lab.vm.machine`) owns the process; this module only says what
to start: the accelerator's options, the machine type, the kernel command
line, the disk, network and console devices, QMP, and the timeout scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"


# Timeouts are a base value times one factor: TCG and debug kernels are slower.
SCALE = {"kvm": 1.0, "tcg": 4.0}
DEBUG_SCALE = 2.5
MACHINE_TYPES = ("microvm", "pc")


@dataclass(frozen=True)
class Accel:
    name: str  # kvm | tcg
    reason: str
    # KVM's CPU model: the one the probe saw a guest run on (a nested host may
    # refuse `host`, lab.vm.machine.KVM_CPU_MODELS); TCG emulates `max`.
    cpu: str = ""

    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", self.cpu or "host"]
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]


@dataclass(frozen=True)
class MachineSpec:
    name: str
    kernel: Path
    rootfs: Path
    vcpus: int = 2
    memory_mib: int = 1024
    cmdline_extra: tuple[str, ...] = ()
    debug_kernel: bool = False
    # pc: the classic PC (PCI, ACPI, HPET). microvm: no PCI to enumerate and
    # no legacy devices, its devices on virtio-mmio, for KVM only: under TCG
    # its kernel has no clock to calibrate the TSC against. With the quiet
    # command line below pc boots as fast under TCG (README, Measured here).
    machine_type: str = "pc"

    def __post_init__(self) -> None:
        if self.machine_type not in MACHINE_TYPES:
            raise ValueError(f"machine type {self.machine_type!r}: one of {MACHINE_TYPES}")


def qemu_opt(value: object) -> str:
    """A value inside a QEMU `key=value,...` option: commas are doubled."""
    return str(value).replace(",", ",,")


# Probes a test VM does not need, each of which waits under TCG: no keyboard
# or mouse behind a PS/2 controller, one serial port instead of four.
QUIET_PROBES = ("i8042.noaux", "i8042.nokbd", "i8042.nopnp", "8250.nr_uarts=1")


EXTRA_CMDLINE = {
    # PCI interrupts from the PIRQ table: setting up ACPI's PCI interrupt
    # links took 0.7 s and more under TCG.
    "pc": ("acpi=noirq",),
    # No PCI bus; QEMU appends the virtio_mmio.device= addresses itself.
    "microvm": ("pci=off",),
}


def kernel_cmdline(spec: MachineSpec) -> str:
    # panic=-1 with -no-reboot: a panicking guest makes QEMU exit instead of
    # spinning, and the console keeps the report.
    base = ["console=ttyS0", "root=/dev/vda", "rw", "init=/sbin/lab-init", "panic=-1",
            "printk.time=1", *QUIET_PROBES, *EXTRA_CMDLINE[spec.machine_type]]
    return " ".join([*base, *spec.cmdline_extra])


def _devices(spec: MachineSpec, overlay: Path, ssh_port: int) -> list[str]:
    """Disk, network and entropy: virtio on PCI (pc) or on MMIO (microvm)."""
    bus = "device" if spec.machine_type == "microvm" else "pci"
    return [
        "-drive", f"id=root,file={qemu_opt(overlay)},if=none,format=qcow2,cache=unsafe",
        "-device", f"virtio-blk-{bus},drive=root",
        # restrict=on: the guest reaches nothing on the host or beyond; only
        # the forwarded SSH port leads in.
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", f"virtio-net-{bus},netdev=net0",
        "-device", f"virtio-rng-{bus}",
    ]


def machine_option(spec: MachineSpec) -> str:
    if spec.machine_type == "pc":
        return "pc"
    # ACPI stays: the guest powers off through it (S5); without it poweroff halts
    # the CPUs and QEMU waits for the next rung. The PIT and the PIC stay too:
    # under TCG the kernel's timer set-up hangs without them.
    return "microvm,acpi=on,pit=on,pic=on,rtc=on,isa-serial=on"


def qemu_argv(
    spec: MachineSpec, accel: Accel, *, overlay: Path, qmp: Path, console_log: Path, ssh_port: int
) -> list[str]:
    """The QEMU command line (pure, so it is unit-tested)."""
    return [
        QEMU,
        "-name", qemu_opt(spec.name),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", machine_option(spec),
        *accel.qemu_args(),
        "-smp", str(spec.vcpus),
        "-m", str(spec.memory_mib),
        "-kernel", str(spec.kernel),
        "-append", kernel_cmdline(spec),
        *_devices(spec, overlay, ssh_port),
        "-chardev", f"file,id=console,path={qemu_opt(console_log)}",
        "-serial", "chardev:console",
        "-qmp", f"unix:{qemu_opt(qmp)},server=on,wait=off",
        # Paused until the lab has finished the QMP handshake and sent `cont`:
        # nothing the guest does can interleave with the greeting.
        "-S",
        "-no-reboot",
    ]


def timeout_scale(accel: Accel, debug_kernel: bool) -> float:
    return SCALE[accel.name] * (DEBUG_SCALE if debug_kernel else 1.0)
