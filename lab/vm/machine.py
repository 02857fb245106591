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

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import BootError, ConfigError, KernelCrash, QemuCrashed, QmpFailed
from lab.host import proc, reaper_client, teardown
from lab.host.tools import require_tools
from lab.vm import console
from lab.vm.qemu_argv import (
    QEMU,
    Accel,
    MachineSpec,
    qemu_argv,
    qemu_opt,
    timeout_scale,
)
from lab.vm.qmp import QMP_TIMEOUT_S, Qmp

log = logging.getLogger(__name__)

KVM_PROBE_S = 6.0
QMP_ATTEMPTS = 2
SHUTDOWN_STEP_S = 5.0
CONSOLE_POLL_S = 0.02  # how often boot watches the console: the phases' resolution
# Console lines that end a boot phase: the kernel's banner, and the kernel
# handing over to our init (both 6.1 and 6.12 word them so).
BANNER = "Linux version "
INIT_STARTED = "as init process"


@dataclass(frozen=True)
class BootTimes:
    """Where one boot's time went, in seconds on the host's clock.

    Each phase ends when its line shows up on the serial console (watched
    every CONSOLE_POLL_S) or, for `ssh`, when the SSH session is open:
    qemu: QEMU started -> the kernel's banner (firmware, loading and
    decompressing the kernel); kernel: banner -> our init started;
    init: init -> the ready marker (sshd listening); ssh: ready -> SSH session
    open (TCP through QEMU's user network, key exchange, authentication).
    """

    machine_type: str
    qemu_s: float
    kernel_s: float
    init_s: float
    ssh_s: float | None = None  # None until a Guest has connected
    # Part of qemu_s: QEMU started paused (-S) -> QMP handshake done and `cont`
    # sent; the guest's CPUs run only after it.
    handshake_s: float = 0.0

    @property
    def to_ready_s(self) -> float:
        return self.qemu_s + self.kernel_s + self.init_s

    @property
    def total_s(self) -> float | None:
        return None if self.ssh_s is None else self.to_ready_s + self.ssh_s

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)
        return {"machine_type": self.machine_type, "qemu_s": r(self.qemu_s),
                "handshake_s": r(self.handshake_s), "kernel_s": r(self.kernel_s),
                "init_s": r(self.init_s), "ssh_s": r(self.ssh_s), "total_s": r(self.total_s)}

    def describe(self) -> str:
        parts = [f"qemu {self.qemu_s:.2f} (qmp {self.handshake_s:.2f})",
                 f"kernel {self.kernel_s:.2f}",
                 f"init {self.init_s:.2f}"]
        if self.ssh_s is not None:
            parts.append(f"ssh {self.ssh_s:.2f}")
        return f"{self.machine_type}: " + ", ".join(parts)


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


# Tried in turn: a nested host may refuse what `host` passes through (seen: QEMU
# aborts setting MSR 0x10a, IA32_ARCH_CAPABILITIES), and accept a plainer model.
KVM_CPU_MODELS = ("host", "host,arch-capabilities=off", "kvm64")


def probe_accel(requested: str, kernel: Path, workdir: Path) -> Accel:
    """Pick the accelerator. `auto` uses KVM only if a guest really runs on it:
    nested KVM can abort or hang right after decompression, so a short boot
    must print the kernel banner on the console within a few seconds, on one
    of KVM_CPU_MODELS. Why each model failed is kept in the reason."""
    if requested == "tcg":
        return Accel("tcg", "requested")
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if not usable:
        if requested == "kvm":
            raise BootError("--accel kvm: /dev/kvm is missing or not accessible (kvm group?)")
        return Accel("tcg", "/dev/kvm is missing or not accessible")
    workdir.mkdir(parents=True, exist_ok=True)
    failures = []
    for i, cpu in enumerate(KVM_CPU_MODELS):
        why = _probe_kvm(cpu, kernel, workdir / f"kvm-probe-{i}")
        if not why:
            return Accel("kvm", f"probe boot printed to the console (-cpu {cpu})", cpu)
        failures.append(f"-cpu {cpu}: {why}")
    if requested == "kvm":
        raise BootError("--accel kvm: no probe guest ran: " + "; ".join(failures))
    return Accel("tcg", "KVM present but no probe guest ran (" + "; ".join(failures) + ")")


def _probe_kvm(cpu: str, kernel: Path, stem: Path) -> str:
    """"" if a guest on KVM with `cpu` printed its banner, else why not."""
    console_log, qemu_log = stem.with_suffix(".console"), stem.with_suffix(".log")
    console_log.unlink(missing_ok=True)
    qemu_log.unlink(missing_ok=True)
    argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc",
            "-accel", "kvm", "-cpu", cpu, "-m", "256", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1",
            "-chardev", f"file,id=console,path={qemu_opt(console_log)}",
            "-serial", "chardev:console", "-no-reboot"]
    child = proc.spawn(argv, output=qemu_log, what="KVM probe", error=BootError)
    status = None
    try:
        deadline = time.monotonic() + KVM_PROBE_S
        while time.monotonic() < deadline:
            if console_log.exists() and "Linux version" in console_log.read_text(
                    errors="replace"):
                return ""
            status = child.poll()
            if status is not None:
                break
            time.sleep(0.2)
    finally:
        child.stop(grace_s=2)
    # It may have printed the banner just before it exited.
    if console_log.exists() and "Linux version" in console_log.read_text(errors="replace"):
        return ""
    said = [line.strip() for line in qemu_log.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith("$ ")
            and "terminating on signal" not in line] if qemu_log.exists() else []
    first = next((line for line in said if "error" in line.lower()), said[0] if said else "")
    if status is not None:
        return f"QEMU exited with status {status}" + (f": {first}" if first else "")
    return f"printed nothing in {KVM_PROBE_S:.0f}s" + (f" (QEMU said: {first})" if first else "")


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
        self.boot_times: BootTimes | None = None  # set once the ready marker is seen
        self._started = 0.0  # time.monotonic() when QEMU was spawned
        self._ready_at = 0.0
        self.ended_by = ""  # how the last shutdown finished: poweroff|quit|sigterm|sigkill
        self._dir: Path | None = None
        self._proc: proc.Child | None = None
        self._qmp: Qmp | None = None
        self._console_seen = 0
        self._handshake_s = 0.0

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
        if self.spec.machine_type == "microvm" and self.accel.name == "tcg":
            # No HPET or PM timer to calibrate the TSC against: 6.12 hangs
            # setting up its timer, 6.1 keeps time with the 4 ms tick.
            raise ConfigError(f"{self.spec.name}: the microvm machine needs KVM; under TCG "
                              "its kernel finds no clock to calibrate the TSC against "
                              "(use [vm] machine = \"pc\")")
        require_tools([QEMU, "qemu-img"])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._dir = reaper_client.private_dir(f"lab-{self.spec.name}-")
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
        self.boot_times = None
        self._started = time.monotonic()
        self._proc = proc.spawn(argv, output=self.qemu_log, error=BootError, what="QEMU")
        self._connect_qmp(qmp_path)
        self._wait_ready()
        self.boot_seconds = self._ready_at - self._started
        log.info("%s: ready in %.1fs (ssh 127.0.0.1:%d)", self.spec.name, self.boot_seconds,
                 self.ssh_port)

    def mark_ssh_ready(self) -> None:
        """The first SSH session after boot is open: the boot's last phase ends."""
        if self.boot_times is not None and self.boot_times.ssh_s is None:
            self.boot_times = dataclasses.replace(
                self.boot_times, ssh_s=time.monotonic() - self._ready_at)

    def _connect_qmp(self, path: Path) -> None:
        """Handshake with the paused QEMU, then let the guest run (`cont`).

        QEMU starts with -S, so no guest activity (an event of a device the
        kernel sets up) can reach the socket before the greeting is read. A
        failed handshake with QEMU still alive is tried once more on a fresh
        connection before it counts as the host breaking."""
        deadline = time.monotonic() + QMP_TIMEOUT_S * self.scale
        while not path.exists():
            self._raise_if_exited("before opening its QMP socket")
            if time.monotonic() > deadline:
                raise QmpFailed(f"{self.spec.name}: QEMU did not open its QMP socket",
                                excerpt=self._qemu_output())
            time.sleep(0.05)
        failures: list[str] = []
        for _ in range(QMP_ATTEMPTS):
            self._qmp = Qmp(path, self.spec.name)
            try:
                self._qmp.connect()
                self._qmp.execute("cont")
                self._handshake_s = time.monotonic() - self._started
                return
            except Exception as exc:  # QEMU died right after creating the socket, or hung
                self._qmp.close()
                self._qmp = None
                self._raise_if_exited("while connecting to QMP")
                failures.append(str(exc) or type(exc).__name__)
                log.warning("%s: QMP handshake failed (%s); trying a fresh connection",
                            self.spec.name, failures[-1])
        raise QmpFailed(f"{self.spec.name}: QMP connection failed {len(failures)} times: "
                        + "; ".join(failures), excerpt=self._qemu_output(),
                        log_path=self.qemu_log)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.boot_timeout_s
        seen: dict[str, float] = {}  # console line -> when it first showed up
        size = -1
        while True:
            now = time.monotonic()
            try:
                on_disk = self.console_log.stat().st_size
            except FileNotFoundError:
                on_disk = size
            if on_disk == size:  # nothing new to parse: only check that QEMU lives
                self._raise_if_exited("during boot")
                if now > deadline:
                    self._boot_timeout(self.console_text())
                time.sleep(CONSOLE_POLL_S)
                continue
            size = on_disk
            text = self.console_text()
            for mark in (BANNER, INIT_STARTED, console.READY_MARKER):
                if mark not in seen and mark in text:
                    seen[mark] = now
            trouble = console.find_trouble(text)
            if trouble:
                raise KernelCrash(f"{self.spec.name}: kernel {trouble[0].kind} during boot",
                                  excerpt=trouble[0].excerpt, log_path=self.console_log)
            failure = console.init_failure(text)
            if failure:
                raise BootError(f"{self.spec.name}: guest init failed: {failure}",
                                excerpt=console.tail(text), log_path=self.console_log)
            if console.is_ready(text):
                self._ready_at = seen[console.READY_MARKER]
                banner = seen.get(BANNER, self._started)
                init = seen.get(INIT_STARTED, banner)
                self.boot_times = BootTimes(self.spec.machine_type, qemu_s=banner - self._started,
                                            kernel_s=init - banner, init_s=self._ready_at - init,
                                            handshake_s=self._handshake_s)
                return
            self._raise_if_exited("during boot")
            if now > deadline:
                self._boot_timeout(text)
            time.sleep(CONSOLE_POLL_S)

    def _boot_timeout(self, text: str) -> None:
        raise BootError(
            f"{self.spec.name}: no ready marker within {self.boot_timeout_s:.0f}s "
            f"({self.accel.name}); last console lines:",
            excerpt=console.tail(text), log_path=self.console_log)

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
        # A negative status is a signal; during boot only QEMU's own bug sends one.
        error = QemuCrashed if code < 0 and when == "during boot" else BootError
        raise error(
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
        fatal = [t for t in trouble if t.fatal]  # console.KINDS says which kinds are
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
        with teardown.signals_deferred():
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
                    reaper_client.remove_private_dir(self._dir)
                    self._dir = None

    def _stop_ladder(self, poweroff: Callable[[], None] | None) -> str:
        """Each rung gets `step` seconds to end QEMU; a signal during the
        teardown (teardown.hurried) skips what is left of the gentle ones."""
        assert self._proc is not None
        step = SHUTDOWN_STEP_S * self.scale
        rungs: list[tuple[str, Callable[[], object]]] = []
        if poweroff is not None:
            rungs.append(("poweroff", poweroff))
        if self._qmp is not None:
            qmp = self._qmp
            rungs.append(("quit", lambda: qmp.execute("quit")))
        rungs.append(("sigterm", lambda: self._proc.send_signal(signal.SIGTERM)))
        for name, action in rungs:
            if teardown.hurried():
                break
            with contextlib.suppress(Exception):  # the next rung is the answer to any failure
                action()
            if self._wait_exit(step):
                return name
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=30)
        return "sigkill"

    def _wait_exit(self, seconds: float) -> bool:
        """QEMU exited within `seconds`; False at once when the teardown is hurried."""
        assert self._proc is not None
        deadline = time.monotonic() + seconds
        while True:
            if self._proc.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic()))
                               ) is not None:
                return True
            if teardown.hurried() or time.monotonic() >= deadline:
                return False
