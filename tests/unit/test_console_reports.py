"""Every report kind the lab's own kernels could be made to print, read back
from real console logs: LKDTM provoked each one in a 6.1 guest built with
kernels/lkdtm.config + kernels/sanitizers.config (capture again with
`.venv/bin/python tests/kernel/capture_console.py`).

Kinds with no LKDTM trigger that reaches them on this kernel and machine are
tested against kernel-worded samples in test_console_machine.py instead:
soft-lockup (under TCG the RCU stall report comes first, at 21 s), hard-lockup
(needs perf NMIs), KASAN and KFENCE (not in the test kernel; KFENCE samples),
lockdep (the --debug kernel), divide error, stack segment, double fault (6.1
reports a stack overflow as a guard-page hit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.vm import console

LOGS = Path(__file__).resolve().parents[1] / "data" / "console"

# LKDTM type -> (first report's kind, fatal, a line of its evidence)
EXPECTED = {
    "panic": ("panic", True, "panic+0x"),
    "bug": ("bug-at", True, "invalid opcode: 0000 [#1]"),
    "warning": ("warning", False, "lkdtm_WARNING"),
    "exception": ("page-fault", True, "lkdtm_EXCEPTION"),
    "hung_task": ("hung-task", False, "task:sh              state:D"),
    "softlockup": ("rcu-stall", False, "lkdtm_SOFTLOCKUP"),
    "array_bounds": ("ubsan", False, "index 8 is out of range"),
    "corrupt_list_add": ("list-corruption", True, "__list_add_valid"),
    "refcount_inc_overflow": ("refcount", False, "refcount_warn_saturate"),
    "exhaust_stack": ("bug", True, "stack guard page: 0000 [#1]"),
}


def reports(kind: str) -> list[console.Trouble]:
    return console.find_trouble((LOGS / f"lkdtm-{kind}.log").read_text(errors="replace"))


@pytest.mark.parametrize("lkdtm_type", sorted(EXPECTED))
def test_the_report_is_found_with_its_kind_and_evidence(lkdtm_type):
    kind, fatal, evidence = EXPECTED[lkdtm_type]
    found = reports(lkdtm_type)
    assert found, f"no report in lkdtm-{lkdtm_type}.log"
    first = found[0]
    assert (first.kind, first.fatal) == (kind, fatal), first.line
    assert evidence in first.excerpt


@pytest.mark.parametrize("lkdtm_type", ["hung_task", "softlockup"])
def test_hang_reports_end_a_case_at_once(lkdtm_type):
    assert reports(lkdtm_type)[0].kind in console.HANG_KINDS


def test_a_clean_boot_of_the_same_kernel_has_no_report():
    # The log starts with the same kernel's boot: everything before LKDTM
    # was provoked is free of reports (no false alarm from boot messages).
    text = (LOGS / "lkdtm-warning.log").read_text(errors="replace")
    boot = text[:text.index("lkdtm: Performing direct entry")]
    assert console.find_trouble(boot) == []


# Kinds no capture above reaches, in the kernel's own wording (arch/x86 traps.c,
# kernel/watchdog*.c, mm/kfence, kernel/locking, kernel/sched); 6.12 prefixes
# exception reports with "Oops: ", 6.1 does not.
SAMPLES = [
    ("divide error: 0000 [#1] PREEMPT SMP NOPTI", "divide-error", True),
    ("Oops: divide error: 0000 [#1] PREEMPT SMP NOPTI", "divide-error", True),
    ("stack segment: 0000 [#1] SMP", "stack-segment", True),
    ("PANIC: double fault, error_code: 0x0", "double-fault", True),
    ("invalid opcode: 0000 [#1] SMP", "invalid-opcode", True),
    ("Oops: invalid opcode: 0000 [#1] PREEMPT SMP", "invalid-opcode", True),
    ("watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [fio:99]", "soft-lockup", False),
    ("Watchdog detected hard LOCKUP on cpu 1", "hard-lockup", False),
    ("BUG: KFENCE: use-after-free read in fuse_x+0x1/0x2", "kfence", False),
    ("BUG: scheduling while atomic: fio/99/0x00000002", "scheduling-while-atomic", False),
    ("DEBUG_RWSEMS_WARN_ON((rwsem_owner(sem) != current) && !rwsem_test_oflags(sem, "
     "RWSEM_NONSPINNABLE)): count = 0x0", "rwsem", False),
    ("WARNING: bad unlock balance detected!", "lockdep", False),
    ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu-stall", False),
]


@pytest.mark.parametrize("line,kind,fatal", SAMPLES, ids=[s[1] + ("-oops" if "Oops" in s[0]
                                                                    else "") for s in SAMPLES])
def test_kernel_worded_reports(line, kind, fatal):
    (found,) = console.find_trouble(f"[ 1.0] boot\n[ 5.1] {line}\n[ 9.9] after\n")
    assert (found.kind, found.fatal) == (kind, fatal)
