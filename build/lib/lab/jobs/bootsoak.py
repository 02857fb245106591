"""`lab bootsoak`: boot to SSH N times per variant, alternating, and count failures by kind.

A benchmark of the boot path, not a test: every boot is QEMU start, the QMP
handshake, the kernel, our init and an SSH command, then the guest's own
poweroff. A failure does not stop the soak; it is counted by what broke
(QMP, QEMU crashing, the kernel or init on the console, SSH) with its first
line kept, and the boot times of the good boots are summarised per variant
(median, p95, max).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import pipeline
from lab.config import LabConfig
from lab.errors import BootError, GuestError, KernelFailure, LabError, QemuCrashed, QmpFailed
from lab.report.document import Table
from lab.ui import Ui
from lab.vm.machine import Machine
from lab.vm.ssh import Guest

KINDS = ("qmp", "qemu-crash", "console", "ssh", "other")


def failure_kind(exc: LabError) -> str:
    if isinstance(exc, QmpFailed):
        return "qmp"
    if isinstance(exc, QemuCrashed):
        return "qemu-crash"
    if isinstance(exc, KernelFailure | BootError):
        return "console"  # the kernel or init failed, or no ready marker came
    if isinstance(exc, GuestError):
        return "ssh"
    return "other"


@dataclass(frozen=True)
class VariantSoak:
    variant: str
    boots: int
    to_ssh_s: tuple[float, ...]  # good boots: QEMU start to the first SSH command done
    failures: dict[str, int] = field(default_factory=dict)
    first_errors: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def row(self) -> tuple[str, ...]:
        t = sorted(self.to_ssh_s)
        def q(p: float) -> str:
            return f"{t[min(len(t) - 1, round(p * (len(t) - 1)))]:.2f}" if t else "-"
        return (self.variant, str(self.boots), str(self.failed),
                ", ".join(f"{k} {n}" for k, n in self.failures.items() if n) or "none",
                f"{statistics.median(t):.2f}" if t else "-", q(0.95), f"{t[-1]:.2f}" if t else "-")


def table(soaks: Sequence[VariantSoak]) -> Table:
    return Table(("variant", "boots", "failed", "by kind", "p50 s", "p95 s", "max s"),
                 tuple(s.row() for s in soaks))


def one_boot(cfg: LabConfig, p: pipeline.Prepared, variant: str, n: int, out: Path) -> float:
    spec = pipeline.machine_spec(cfg, p.builds[variant], p.image, name=f"soak-{variant}-{n}")
    start = time.monotonic()
    with Machine(spec, p.accel, log_dir=out, boot_timeout_s=cfg.vm.boot_timeout_s) as vm, \
            Guest(vm, p.image) as guest:
        guest.run(["true"], check=True)
        took = time.monotonic() - start
        vm.shutdown(poweroff=guest.poweroff)
    return took


def run(cfg: LabConfig, p: pipeline.Prepared, boots: int, out: Path, ui: Ui) -> list[VariantSoak]:
    names = list(p.builds)
    times: dict[str, list[float]] = {n: [] for n in names}
    fails: dict[str, Counter] = {n: Counter() for n in names}
    errors: dict[str, list[str]] = {n: [] for n in names}
    logs = out / "boots"
    logs.mkdir(parents=True, exist_ok=True)
    with ui.step(f"boot soak: {boots} boots x {len(names)} variants", phase="boot") as step:
        for i in range(boots):
            for name in names:  # alternating, so drift in the host hits all alike
                try:
                    times[name].append(one_boot(cfg, p, name, i, logs))
                    # A good boot's logs are not evidence; keep the folder small.
                    for f in logs.glob(f"soak-{name}-{i}.*"):
                        f.unlink()
                except LabError as exc:
                    kind = failure_kind(exc)
                    fails[name][kind] += 1
                    errors[name].append(f"boot {i}: {kind}: {str(exc).splitlines()[0]}")
                    ui.note(f"{name} boot {i}: {kind}: {str(exc).splitlines()[0]}")
            done = sum(len(t) for t in times.values())
            bad = sum(sum(c.values()) for c in fails.values())
            step.update(f"{i + 1}/{boots} rounds, {done} good, {bad} failed")
    soaks = [VariantSoak(n, boots, tuple(times[n]), {k: fails[n][k] for k in KINDS},
                         tuple(errors[n][:10])) for n in names]
    (out / "bootsoak.json").write_text(json.dumps([asdict(s) for s in soaks], indent=2) + "\n")
    return soaks
