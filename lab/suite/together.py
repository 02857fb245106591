"""Independent cases run together in one guest.

Most of a case's time is waiting: the server holds each WRITE long enough for
every writer to reach it. Cases that share nothing (each has its own SSH
connection, case budget, mount point and files) therefore run side by side,
and the suite takes about as long as its busiest lane, not the sum of its
cases.

Running together is for speed only; no verdict depends on it:
- a kernel failure or report while cases ran together cannot be pinned on one
  of them: nothing from the batch counts, and the caller runs those cases one
  by one on a fresh VM, where a report names its case (and if none fails
  there, the batch's evidence is kept as a failed check of its own);
- a case that fails together runs again alone and the alone verdict counts
  (what it saw together is kept in its details), so no FAIL comes from the
  company a case kept.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lab.errors import KernelFailure
from lab.results import CheckResult, KernelEvidence
from lab.suite import checks
from lab.suite.spec import Case, Observation
from lab.vm.ssh import Guest

# The name of the check that carries a kernel failure seen only while cases
# ran together (lab.jobs.runs).
CHECK_NAME = "together"


@dataclass(frozen=True)
class Batch:
    """What running cases together gave."""

    passed: list[CheckResult]  # judged on this batch, in the cases' order
    failed: dict[str, CheckResult]  # by case name: to run again alone
    trouble: str = ""  # the kernel failed or reported: nothing above counts
    evidence: str = ""


def grouped(cases: Sequence[Case], lanes: int) -> list[Case]:
    """The cases that may run together: none when there is one lane or one
    case, or when a case is asked for twice (a mount and a result per name)."""
    group = [c for c in cases if not c.alone]
    if len({c.name for c in cases}) < len(cases):
        return []
    return group if lanes > 1 and len(group) > 1 else []


def run_batch(cases: Sequence[Case], guest: Guest, variant: str, features: tuple[str, ...],
              *, lanes: int, repeat: int = 1,
              progress: Callable[[Case], None] | None = None) -> Batch:
    """Run `cases` on up to `lanes` SSH connections to `guest`'s VM at once."""
    stop = threading.Event()  # after a kernel failure, start no further case

    def lane(case: Case) -> tuple[list[Observation], float] | None:
        if stop.is_set():
            return None
        start = time.monotonic()
        try:
            conn = guest.sibling(case.name)
            try:
                seen = checks.observe(case, conn, features, repeat,
                                      mount_name=f"c{case.number}")
            finally:
                conn.close()
        except BaseException:
            stop.set()
            raise
        if progress:
            progress(case)
        return seen, time.monotonic() - start

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=lanes,
                                                 thread_name_prefix="case")
    try:
        futures = [pool.submit(lane, case) for case in cases]
        outcomes: dict[str, tuple[list[Observation], float]] = {}
        failure: tuple[Case, KernelFailure] | None = None
        # Every lane ends by its case's budget: each command it runs is bounded.
        for case, future in zip(cases, futures, strict=True):
            try:
                outcome = future.result()
            except KernelFailure as exc:
                failure = failure or (case, exc)
                continue
            if outcome is not None:
                outcomes[case.name] = outcome
    finally:
        # On an error the VM is torn down next, which ends the lanes still running.
        pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        case, exc = failure
        return Batch([], {}, f"kernel {exc.kind} while {case.name} ran beside "
                     f"{len(cases) - 1} other cases: {str(exc).splitlines()[0]}",
                     exc.excerpt)
    ok, trouble, excerpt = checks.health(guest, guest.machine.new_trouble())
    if not ok:
        return Batch([], {}, f"{trouble} while {len(cases)} cases ran together", excerpt)
    passed: list[CheckResult] = []
    failed: dict[str, CheckResult] = {}
    for case in cases:
        seen, seconds = outcomes[case.name]
        run = checks.judge(case, variant, seen, (True, "", ""), seconds)
        if run.result.passed:
            passed.append(run.result)
        else:
            failed[case.name] = run.result
    return Batch(passed, failed)


def unexplained(batch: Batch, variant: str, alone: Sequence[CheckResult]) -> CheckResult | None:
    """The batch's kernel failure as a failed check of its own, when no case
    run alone afterwards failed with kernel evidence of its own."""
    if not batch.trouble or any(r.kernel is not None or r.console_excerpt
                                for r in alone):
        return None
    return CheckResult(
        name=CHECK_NAME, variant=variant, passed=False,
        expected="the kernel neither crashes, hangs nor reports trouble while cases run "
                 "together",
        observed=f"{batch.trouble}; alone, no case failed that way",
        title="cases run together in one guest",
        kernel=KernelEvidence("together", batch.trouble, evidence=batch.evidence),
        console_excerpt=batch.evidence)
