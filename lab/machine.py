"""QEMU virtual machines, controlled over QMP, watched through the serial console.

A `Machine` is a context manager that owns one QEMU process, its QMP socket,
its console log and a throwaway qcow2 overlay, all in a private 0700 folder.
Leaving the block always tears everything down: a graceful poweroff if the
caller gives one to `shutdown` (the guest's own, over SSH), then QMP `quit`,
then SIGTERM, then SIGKILL, each with its own deadline. QEMU is started
through `lab.proc`, so it dies with the lab however the lab dies, and the
reaper removes the private folder then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from lab import console, proc
from lab.errors import BootError, KernelCrash
from lab.host import require_tools

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
# Timeouts are a base value times one factor: TCG and debug kernels are slower.
SCALE = {"kvm": 1.0, "tcg": 4.0}
DEBUG_SCALE = 2.5
KVM_PROBE_S = 6.0
QMP_TIMEOUT_S = 10.0
SHUTDOWN_STEP_S = 5.0


@dataclass(frozen=True)
class Accel:
    name: str  # kvm | tcg
    reason: str

    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
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


def qemu_opt(value: object) -> str:
    """A value inside a QEMU `key=value,...` option: commas are doubled."""
    return str(value).replace(",", ",,")


def kernel_cmdline(spec: MachineSpec) -> str:
    # panic=-1 with -no-reboot: a panicking guest makes QEMU exit instead of
    # spinning, and the console keeps the report.
    base = ["console=ttyS0", "root=/dev/vda", "rw", "init=/sbin/lab-init", "panic=-1",
            "printk.time=1"]
    return " ".join([*base, *spec.cmdline_extra])


def qemu_argv(
    spec: MachineSpec, accel: Accel, *, overlay: Path, qmp: Path, console_log: Path, ssh_port: int
) -> list[str]:
    """The QEMU command line (pure, so it is unit-tested)."""
    return [
        QEMU,
        "-name", qemu_opt(spec.name),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "pc",
        *accel.qemu_args(),
        "-smp", str(spec.vcpus),
        "-m", str(spec.memory_mib),
        "-kernel", str(spec.kernel),
        "-append", kernel_cmdline(spec),
        "-drive", f"file={qemu_opt(overlay)},if=virtio,format=qcow2,cache=unsafe",
        # restrict=on: the guest reaches nothing on the host or beyond; only
        # the forwarded SSH port leads in.
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-chardev", f"file,id=console,path={qemu_opt(console_log)}",
        "-serial", "chardev:console",
        "-qmp", f"unix:{qemu_opt(qmp)},server=on,wait=off",
        "-no-reboot",
    ]


def _keep_previous(log: Path) -> None:
    """A reboot (after a crash) must not overwrite the evidence: number it."""
    if not log.exists() or log.stat().st_size == 0:
        return
    n = 1
    while (old := log.with_name(f"{log.stem}.{n}{log.suffix}")).exists():
        n += 1
    log.rename(old)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timeout_scale(accel: Accel, debug_kernel: bool) -> float:
    return SCALE[accel.name] * (DEBUG_SCALE if debug_kernel else 1.0)


def probe_accel(requested: str, kernel: Path, workdir: Path) -> Accel:
    """Pick the accelerator. `auto` uses KVM only if a guest really runs on it:
    nested KVM can hang right after decompression, so a short boot must print
    the kernel banner on the console within a few seconds."""
    if requested == "tcg":
        return Accel("tcg", "requested")
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if not usable:
        if requested == "kvm":
            raise BootError("--accel kvm: /dev/kvm is missing or not accessible (kvm group?)")
        return Accel("tcg", "/dev/kvm is missing or not accessible")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "kvm-probe.console"
    argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc",
            "-accel", "kvm", "-cpu", "host", "-m", "256", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1",
            "-chardev", f"file,id=console,path={qemu_opt(log_path)}", "-serial", "chardev:console",
            "-no-reboot"]
    child = proc.spawn(argv, what="KVM probe", error=BootError)
    ok = False
    try:
        deadline = time.monotonic() + KVM_PROBE_S
        while time.monotonic() < deadline and child.poll() is None:
            if log_path.exists() and "Linux version" in log_path.read_text(errors="replace"):
                ok = True
                break
            time.sleep(0.2)
    finally:
        child.stop(grace_s=2)
    if ok:
        return Accel("kvm", "probe boot printed to the console")
    if requested == "kvm":
        raise BootError(f"--accel kvm: a probe guest printed nothing within {KVM_PROBE_S:.0f}s")
    return Accel("tcg", f"KVM present but a probe guest printed nothing in {KVM_PROBE_S:.0f}s")


class Qmp:
    """A synchronous QMP client with a timeout on every call (one per VM)."""

    def __init__(self, path: Path, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient(name)
        self._path = path

    def _sync(self, coro: Any, timeout: float) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def connect(self, timeout: float = QMP_TIMEOUT_S) -> None:
        self._sync(self._client.connect(str(self._path)), timeout)

    def execute(self, command: str, timeout: float = QMP_TIMEOUT_S, **args: Any) -> Any:
        return self._sync(self._client.execute(command, args or None), timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sync(self._client.disconnect(), QMP_TIMEOUT_S)
        self._loop.close()


class Machine:
    """One QEMU guest. Use as `with Machine(...) as vm:`."""

    def __init__(
        self,
        spec: MachineSpec,
        accel: Accel,
        *,
        log_dir: Path,
        boot_timeout_s: float = 60.0,
    ) -> None:
        self.spec = spec
        self.accel = accel
        self.scale = timeout_scale(accel, spec.debug_kernel)
        self.boot_timeout_s = boot_timeout_s * self.scale
        self.log_dir = log_dir
        self.console_log = log_dir / f"{spec.name}.console.log"
        self.qemu_log = log_dir / f"{spec.name}.qemu.log"
        self.ssh_port = 0
        self.boot_seconds = 0.0
        self.ended_by = ""  # how the last shutdown finished: poweroff|quit|sigterm|sigkill
        self._dir: Path | None = None
        self._proc: proc.Child | None = None
        self._qmp: Qmp | None = None
        self._console_seen = 0

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Machine:
        try:
            self.launch()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def launch(self) -> None:
        require_tools([QEMU, "qemu-img"])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._dir = proc.private_dir(f"lab-{self.spec.name}-")
        overlay = self._dir / "overlay.qcow2"
        proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                  self.spec.rootfs, overlay], timeout=60, error=BootError, what="qemu-img")
        qmp_path = self._dir / "qmp.sock"
        _keep_previous(self.console_log)
        _keep_previous(self.qemu_log)
        self.console_log.write_text("")
        self._console_seen = 0
        self.ssh_port = free_port()
        argv = qemu_argv(self.spec, self.accel, overlay=overlay, qmp=qmp_path,
                         console_log=self.console_log, ssh_port=self.ssh_port)
        start = time.monotonic()
        self._proc = proc.spawn(argv, output=self.qemu_log, error=BootError, what="QEMU")
        self._connect_qmp(qmp_path)
        self._wait_ready()
        self.boot_seconds = time.monotonic() - start
        log.info("%s: ready in %.1fs (ssh 127.0.0.1:%d)", self.spec.name, self.boot_seconds,
                 self.ssh_port)

    def _connect_qmp(self, path: Path) -> None:
        deadline = time.monotonic() + QMP_TIMEOUT_S * self.scale
        while not path.exists():
            self._raise_if_exited("before opening its QMP socket")
            if time.monotonic() > deadline:
                raise BootError(f"{self.spec.name}: QEMU did not open its QMP socket",
                                excerpt=self._qemu_output())
            time.sleep(0.05)
        self._qmp = Qmp(path, self.spec.name)
        try:
            self._qmp.connect()
        except Exception as exc:  # QEMU died right after creating the socket, or hung
            self._raise_if_exited("while connecting to QMP")
            raise BootError(f"{self.spec.name}: QMP connection failed: {exc}",
                            excerpt=self._qemu_output(), log_path=self.qemu_log) from exc

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.boot_timeout_s
        while True:
            text = self.console_text()
            trouble = console.find_trouble(text)
            if trouble:
                raise KernelCrash(f"{self.spec.name}: kernel {trouble[0].kind} during boot",
                                  excerpt=trouble[0].excerpt, log_path=self.console_log)
            failure = console.init_failure(text)
            if failure:
                raise BootError(f"{self.spec.name}: guest init failed: {failure}",
                                excerpt=console.tail(text), log_path=self.console_log)
            if console.is_ready(text):
                return
            self._raise_if_exited("during boot")
            if time.monotonic() > deadline:
                raise BootError(
                    f"{self.spec.name}: no ready marker within {self.boot_timeout_s:.0f}s "
                    f"({self.accel.name}); last console lines:",
                    excerpt=console.tail(text), log_path=self.console_log)
            time.sleep(0.1)

    def _raise_if_exited(self, when: str) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return
        text = self.console_text()
        trouble = console.find_trouble(text)
        if trouble:
            raise KernelCrash(f"{self.spec.name}: kernel {trouble[0].kind} ({when})",
                              excerpt=trouble[0].excerpt, log_path=self.console_log)
        raise BootError(
            f"{self.spec.name}: QEMU exited with status {code} {when}",
            excerpt=(self._qemu_output() + "\n--- console ---\n" + console.tail(text)).strip(),
            log_path=self.qemu_log)

    def _qemu_output(self) -> str:
        try:
            return console.tail(self.qemu_log.read_text(errors="replace"), 20)
        except FileNotFoundError:
            return ""

    # -- state -------------------------------------------------------------

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def status(self) -> str:
        """QMP `query-status`: running, paused, shutdown, ..."""
        if self._qmp is None or not self.is_running():
            return "stopped"
        return self._qmp.execute("query-status")["status"]

    def new_trouble(self) -> list[console.Trouble]:
        """Kernel reports that appeared since the last call (for per-test checks)."""
        text = self.console_text()
        fresh = text[self._console_seen:]
        self._console_seen = len(text)
        return console.find_trouble(fresh)

    def settle(self, seconds: float = 3.0) -> None:
        """Give a QEMU that is going away a moment to finish exiting.

        An SSH error can arrive while QEMU is still tearing down (its sockets
        close before the process is reaped); checking right then would miss
        that the machine is gone.
        """
        if self._proc is not None:
            self._proc.wait(timeout=seconds)

    def check_alive(self, what: str) -> None:
        """Raise the kernel's own report if the guest crashed, else BootError if gone."""
        trouble = console.find_trouble(self.console_text())
        # Only reports after which the kernel cannot be trusted to go on; the
        # rest (WARNING, lockdep, might-sleep...) fail the case via health().
        fatal = [t for t in trouble if t.kind in ("panic", "oops", "gpf")
                 or "Oops: " in t.excerpt or "Kernel panic" in t.excerpt]
        if fatal:
            raise KernelCrash(f"{self.spec.name}: kernel {fatal[0].kind} {what}",
                              excerpt=fatal[0].excerpt, log_path=self.console_log)
        if not self.is_running():
            self._raise_if_exited(what)

    # -- teardown ----------------------------------------------------------

    def shutdown(self, poweroff: Callable[[], None] | None = None) -> None:
        """Stop the guest and remove its private folder; safe to call twice.

        `poweroff` is the guest's own way down (`Guest.poweroff`), tried first.
        Ctrl-C, SIGTERM and SIGHUP wait until QEMU is gone, QMP closed and the
        folder removed (they are delivered right after), so a second signal
        cannot strand QEMU or its folder.
        """
        with proc.signals_deferred():
            try:
                if self._proc is not None and self._proc.poll() is None:
                    self.ended_by = self._stop_ladder(poweroff)
            finally:
                if self._proc is not None:
                    if self._proc.poll() is None:  # the ladder itself failed
                        self.ended_by = "sigkill"
                    self._proc.stop(grace_s=SHUTDOWN_STEP_S)  # reaps; never leaves QEMU
                if self._qmp is not None:
                    self._qmp.close()
                    self._qmp = None
                if self._dir is not None:
                    proc.remove_private_dir(self._dir)
                    self._dir = None

    def _stop_ladder(self, poweroff: Callable[[], None] | None) -> str:
        assert self._proc is not None
        step = SHUTDOWN_STEP_S * self.scale
        if poweroff is not None:
            with contextlib.suppress(Exception):  # the next rung is the answer to any failure
                poweroff()
            if self._wait_exit(step):
                return "poweroff"
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self._qmp.execute("quit")
            if self._wait_exit(step):
                return "quit"
        self._proc.send_signal(signal.SIGTERM)
        if self._wait_exit(step):
            return "sigterm"
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=30)
        return "sigkill"

    def _wait_exit(self, seconds: float) -> bool:
        assert self._proc is not None
        return self._proc.wait(timeout=seconds) is not None
