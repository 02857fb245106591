"""The tree's and the user's own tests judged as an A/B, not as absolute truth.

A kselftest, a KUnit suite or a user's script may fail on any kernel for
reasons that have nothing to do with the patch (a test that needs hardware,
a known bug of that kernel). When the same check ran on the base of the
comparison, the head is judged against it, sub-test by sub-test:

- a sub-test that fails on the head and passed (or did not exist) on the base
  is a regression and fails the head;
- one that fails on both is pre-existing: shown, counted, not a failure;
- a check that failed as a whole (the time limit, a failure no sub-test
  names) is a regression unless the base's run of it failed as a whole too;
  one in which the kernel crashed, hung or reported trouble always is;
- the base's own runs are the reference: their failures are shown, never
  the verdict's.

With one variant, or a check the base did not run (or the early stop left
out), the check's own verdict stands. The lab's own cases are never judged
this way: each checks what its variant claims.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lab.results import AbReading, AbRole, CheckResult, OwnVerdict
from lab.verdict import RunsVerdict

SHOWN = 5


def failed_subtests(check: CheckResult) -> list[str]:
    return [s.name for s in check.subtests if s.failed]


def skipped_subtests(check: CheckResult) -> int:
    return sum(s.skipped for s in check.subtests)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f", ... ({len(names)} in all)" if len(names) > SHOWN
                                       else "")


def _raw(check: CheckResult) -> CheckResult:
    """The check as it ran, before any A/B judgement (judging is idempotent:
    merged shards are judged again once the base's runs have joined them)."""
    if check.ab is None:
        return check
    own = check.ab.own
    return dataclasses.replace(check, passed=own.passed, observed=own.observed,
                               verdict=own.verdict, ab=None)


def _judged(check: CheckResult, role: AbRole, reading: dict[str, Any],
            **changes: Any) -> CheckResult:
    own = OwnVerdict(check.passed, check.observed, check.verdict)
    return dataclasses.replace(check, ab=AbReading(role, own, **reading), **changes)


def _as_reference(check: CheckResult, new: str) -> CheckResult:
    failed = failed_subtests(check)
    reading = {"failures": tuple(failed)}
    if check.passed:
        return _judged(check, AbRole.BASE, reading)
    observed = (f"reference for {new}: {check.observed}" +
                (f"; failing here: {_names(failed)}" if failed else ""))
    return _judged(check, AbRole.BASE, reading, passed=True, verdict=RunsVerdict.PASS.value,
                   observed=observed)


def _whole(check: CheckResult) -> str:
    """Why the check failed beyond what its failing sub-tests explain: the
    kernel crashed, hung or reported trouble, the time limit, or a failure
    with no sub-test to blame; "" if it passed or its sub-tests say it all."""
    if check.passed:
        return ""
    if check.kernel is not None:
        return f"the kernel's {check.kernel.kind}"
    if check.timed_out:
        return "the time limit"
    if not failed_subtests(check):
        return "a failure no sub-test names"
    return ""


def _against(check: CheckResult, base: CheckResult) -> CheckResult:
    mine, theirs = failed_subtests(check), set(failed_subtests(base))
    new_failures = [n for n in mine if n not in theirs]
    pre_existing = [n for n in mine if n in theirs]
    whole, base_whole = _whole(check), _whole(base)
    # The kernel's failures are the kernel's: a crash, hang or report on the
    # head is never excused by the base's; any other failure as a whole is
    # pre-existing only if the base failed as a whole too.
    whole_regressed = bool(whole) and (check.kernel is not None or not base_whole)
    regressed = bool(new_failures) or whole_regressed
    reading = {"base": base.variant, "regressions": tuple(new_failures),
               "pre_existing": tuple(pre_existing), "failed_as_a_whole": whole,
               "base_failed_as_a_whole": base_whole,
               "skipped_here": skipped_subtests(check), "skipped_base": skipped_subtests(base)}
    if check.passed:
        return _judged(check, AbRole.HEAD, reading)
    parts = []
    if new_failures:
        parts.append(f"regressed against {base.variant}: {_names(new_failures)}")
    if whole_regressed:
        parts.append(f"{whole} on this side" + (f", not on {base.variant}" if not base_whole
                                                 else ""))
    if pre_existing:
        parts.append(f"failing on {base.variant} too: {_names(pre_existing)}")
    if whole and not whole_regressed:
        parts.append(f"{base.variant} failed it as a whole too ({base_whole})")
    observed = "; ".join(parts) + f" [{check.observed}]"
    if regressed:
        return _judged(check, AbRole.HEAD, reading, observed=observed)
    return _judged(check, AbRole.HEAD, reading, passed=True, verdict=RunsVerdict.PASS.value,
                   observed=f"no regression: {observed}")


def judge(checks: Sequence[CheckResult], base: str, new: str) -> list[CheckResult]:
    """The checks, with the tree's and user's tests judged against `base`."""
    checks = [_raw(c) for c in checks]
    # A base run the early stop left out is no reference: the head stands alone.
    on_base = {c.name: c for c in checks if c.variant == base
               and c.runs_verdict is not RunsVerdict.NOT_RUN}
    ran_elsewhere = {c.name for c in checks if c.variant != base}
    judged = []
    for check in checks:
        if not check.kind.judged_against_base:
            judged.append(check)
        elif check.variant == base:
            judged.append(_as_reference(check, new) if check.name in ran_elsewhere
                          and check.name in on_base else check)
        elif check.name in on_base:
            judged.append(_against(check, on_base[check.name]))
        else:
            judged.append(check)
    return judged
