"""The kernel's own crash provoker (LKDTM) as lab cases, for the tests.

A variant built with kernels/lkdtm.config has /sys/kernel/debug/provoke-crash/;
each `provoke_case(TYPE)` is a suite Case whose run provokes TYPE, so the
lab's real case runner (lab/checks.py) has to turn the kernel's report into
a verdict with evidence, exactly as for a broken patch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab import pipeline
from lab.config import LabConfig
from lab.suite import spec

KERNELS = Path(__file__).resolve().parents[2] / "kernels"
LKDTM_FRAGMENT = KERNELS / "lkdtm.config"
SANITIZERS_FRAGMENT = KERNELS / "sanitizers.config"
DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"
MOUNT_DEBUGFS = "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug"
# Types that block the writer forever: provoked in the background, then the
# case waits for the kernel to say something.
BLOCKING = {"HUNG_TASK", "SOFTLOCKUP", "HARDLOCKUP", "SPINLOCKUP"}


def lkdtm_variant(cfg: LabConfig, base: str, out: Path, *, sanitizers: bool = False):
    """`base` with LKDTM (and, for capturing every report kind, the sanitizers)."""
    (v,) = pipeline.resolve_variants(cfg, pipeline.VariantRequest((base,)), out)
    extra = (LKDTM_FRAGMENT, SANITIZERS_FRAGMENT) if sanitizers else (LKDTM_FRAGMENT,)
    return dataclasses.replace(v, name="lkdtm-sanitizers" if sanitizers else "lkdtm",
                               fragments=(*v.fragments, *extra))


def provoke_case(kind: str, wait_s: float = 60.0) -> spec.Case:
    def run(ctx: spec.CaseContext) -> spec.Observation:
        g = ctx.guest
        g.run(MOUNT_DEBUGFS, check=True)
        if kind in BLOCKING:
            g.run(f"nohup sh -c 'echo {kind} > {DIRECT}' >/dev/null 2>&1 &", timeout=30)
            g.run(f"sleep {int(wait_s)}", timeout=wait_s + 30)
        else:
            g.run(f"echo {kind} > {DIRECT}", timeout=wait_s)
        return spec.Observation(True, "the kernel survives", f"{kind} provoked")

    # Alone: it breaks the kernel on purpose, and every provoke mounts debugfs.
    return spec.Case(900, f"lkdtm-{kind.lower()}", f"LKDTM {kind}", run, budget_s=wait_s + 60,
                      alone=True)
