"""Run one case on one guest and turn what happened into a CheckResult.

The one place where a case's outcome is judged: its observations (repeated
under the lab's flake policy), the kernel's health after it, and a kernel
failure in the middle of it (crash, hang, a guest program's system call
failing), which is a failed check carrying the kernel's evidence, never an
error of the lab.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.errors import KernelFailure, LabError
from lab.results import CheckResult, KernelEvidence
from lab.suite.spec import Case, CaseContext, Observation
from lab.verdict import FlakePolicy, RunsVerdict
from lab.vm import console
from lab.vm.ssh import Guest

# Time for the blocked tasks' stacks to reach the console after sysrq-w.
SYSRQ_SETTLE_S = 1.0
EVIDENCE_LIMIT = 30_000


@dataclass(frozen=True)
class CaseRun:
    result: CheckResult
    vm_usable: bool  # False: the kernel failed or reported trouble; boot a fresh VM
    verdict: RunsVerdict  # over the repeats, by the flake policy


def health(guest: Guest, console_trouble: Sequence[console.Trouble]) -> tuple[bool, str, str]:
    """No kernel report on the console since the last look, nor in dmesg."""
    dmesg = guest.run("dmesg -c", timeout=30).stdout
    reports = list(console_trouble) + console.find_trouble(dmesg)
    if not reports:
        return True, "", ""
    first = reports[0]
    return False, f"kernel {first.kind}: {first.line}", first.excerpt


def run_case(case: Case, guest: Guest, variant: str, features: tuple[str, ...],
             repeat: int = 1, policy: FlakePolicy | None = None) -> CaseRun:
    """Run one case `repeat` times and judge it."""
    start = time.monotonic()
    try:
        observations = observe(case, guest, features, repeat)
    except KernelFailure as failure:
        return CaseRun(_kernel_failed(case, guest, variant, failure, start), False,
                       RunsVerdict.FAIL)
    ok, trouble, excerpt = health(guest, guest.machine.new_trouble())
    return judge(case, variant, observations, (ok, trouble, excerpt),
                 time.monotonic() - start, policy)


def observe(case: Case, guest: Guest, features: tuple[str, ...], repeat: int = 1,
            mount_name: str = "case") -> list[Observation]:
    """The case's observations, `repeat` of them, each within the case's budget;
    a kernel failure in any of them raises KernelFailure."""
    observations: list[Observation] = []
    for _ in range(repeat):
        with guest.watch_case(case.budget_s):
            observations.append(case.run(CaseContext(guest, features, mount_name)))
    return observations


def judge(case: Case, variant: str, observations: Sequence[Observation],
          healthy: tuple[bool, str, str], duration_s: float,
          policy: FlakePolicy | None = None) -> CaseRun:
    """A case's verdict from its observations and the kernel's health after them
    (`health`'s answer): a kernel report fails every run of it."""
    policy = policy or FlakePolicy()
    ok, trouble, excerpt = healthy
    repeat = len(observations)
    last = observations[-1]
    judged = policy.judge([o.passed and ok for o in observations])
    observed = last.observed if ok else f"{last.observed}; {trouble}"
    if repeat > 1:
        passes = sum(o.passed for o in observations)
        flaky = ", flaky" if judged is RunsVerdict.FLAKY else ""
        observed += f" ({passes}/{repeat} runs passed{flaky})"
    return CaseRun(CheckResult(
        name=case.name,
        variant=variant,
        passed=judged is RunsVerdict.PASS,
        expected=last.expected + ("" if ok else "; no kernel reports"),
        observed=observed,
        details=last.details,
        number=case.number,
        title=case.title,
        subtests=last.subtests,
        timed_out=last.timed_out,
        duration_s=duration_s,
        console_excerpt=excerpt,
        verdict=judged.value,
        kind=case.kind,
        # The kernel reported trouble (a WARNING, lockdep, ...): its failure, typed.
        kernel=None if ok else KernelEvidence("report", trouble, evidence=excerpt),
    ), vm_usable=ok, verdict=judged)


def _kernel_failed(case: Case, guest: Guest, variant: str, failure: KernelFailure,
                   start: float) -> CheckResult:
    stacks = blocked_stacks(guest) if failure.kind == "hang" else []
    reports = console.find_trouble(guest.console_since_case())
    evidence = "\n\n".join(part for part in (
        failure.excerpt.strip(),
        "--- blocked tasks (sysrq w) ---\n" + "\n\n".join(stacks) if stacks else "",
    ) if part)
    summary = str(failure).splitlines()[0]
    return CheckResult(
        name=case.name,
        variant=variant,
        passed=False,
        expected="the kernel neither crashes nor hangs",
        observed=f"kernel {failure.kind}: {summary}",
        number=case.number, title=case.title,
        kernel=KernelEvidence(failure.kind, summary, tuple(r.kind for r in reports),
                              len(stacks), evidence[-EVIDENCE_LIMIT:]),
        duration_s=time.monotonic() - start,
        console_excerpt=evidence[-EVIDENCE_LIMIT:],
        kind=case.kind,
    )


def blocked_stacks(guest: Guest) -> list[str]:
    """The stacks of every task in D state, from sysrq-w over a fresh SSH
    connection (the old one is stuck behind the hung command). A guest too
    wedged to answer leaves the hung-task reports on the console as evidence."""
    if not guest.machine.is_running():
        return console.blocked_tasks(guest.console_since_case())
    try:
        guest.reconnect(10 * guest.machine.scale)
        guest.sysrq("w")
        time.sleep(SYSRQ_SETTLE_S)
    except LabError:
        pass
    return console.blocked_tasks(guest.console_since_case())


def not_run(case: Case, variant: str, kind: str, cases: Sequence[str]) -> CheckResult:
    """A case left out because the kernel had already failed the same way in `cases`."""
    return CheckResult(
        name=case.name, variant=variant, passed=False, expected="the case runs",
        observed=f"not run: the kernel's {kind} already failed {len(cases)} cases "
                 f"({', '.join(cases)}); --keep-going runs every case",
        number=case.number, title=case.title,
        verdict=RunsVerdict.NOT_RUN.value, kind=case.kind)


def boot_failure(case: Case, variant: str, failure: KernelFailure) -> CheckResult:
    """A case that could not start because the kernel failed as it booted."""
    summary = str(failure).splitlines()[0]
    return CheckResult(
        name=case.name, variant=variant, passed=False,
        expected="the kernel boots", observed=f"kernel {failure.kind} at boot: {summary}",
        number=case.number, title=case.title,
        kernel=KernelEvidence(failure.kind, summary,
                              evidence=failure.excerpt[-EVIDENCE_LIMIT:]),
        console_excerpt=failure.excerpt[-EVIDENCE_LIMIT:], kind=case.kind)
