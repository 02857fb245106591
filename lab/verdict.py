"""What a failure means, decided in one place for every command.

Three kinds of trouble, and every command maps them the same way:

- the kernel under test failed: it crashed, hung, or misbehaved under a
  case (a failed check with evidence; exit 1; "bad" to a bisection);
- the variant cannot be tested: its patch does not apply, it does not build,
  or it does not boot (exit 2 or 3 as the error says; "skip", 125, to a
  bisection);
- the lab was asked something it cannot do: a bad command line, a missing
  script, an unknown case (exit 2; a bisection aborts, 128: it is not about
  the commit, and every commit would be skipped);
- the host or the lab broke (exit 3; a bisection aborts).

Repeated runs of one check are judged by one explicit flake policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from lab.errors import BootError, BuildError, KconfigUnmet, KernelFailure, LabError, PatchError

EXIT_OK = 0
EXIT_KERNEL_FAILED = 1
EXIT_LAB_BROKE = 3
BISECT_GOOD, BISECT_BAD, BISECT_SKIP, BISECT_ABORT = 0, 1, 125, 128


class Outcome(StrEnum):
    KERNEL_FAILED = "kernel-failed"
    UNTESTABLE = "untestable"
    BAD_INPUT = "bad-input"
    LAB_BROKE = "lab-broke"


def classify(exc: BaseException) -> Outcome:
    if isinstance(exc, KernelFailure):
        return Outcome.KERNEL_FAILED
    if isinstance(exc, (PatchError, KconfigUnmet, BuildError, BootError)):
        return Outcome.UNTESTABLE  # about this commit: it does not apply, build or boot
    if isinstance(exc, LabError) and exc.exit_code == 2:
        return Outcome.BAD_INPUT  # a ConfigError: about how the lab was asked
    return Outcome.LAB_BROKE


def exit_code(exc: LabError) -> int:
    """The CLI's exit status for an error that ended a command."""
    if classify(exc) is Outcome.KERNEL_FAILED:
        return EXIT_KERNEL_FAILED
    return exc.exit_code


def bisect_code(exc: BaseException) -> int:
    """git bisect run's contract: 1 bad, 125 cannot test, 128 abort (anything
    that is not about the commit: bad input, the host or the lab breaking, a bug)."""
    return {Outcome.KERNEL_FAILED: BISECT_BAD, Outcome.UNTESTABLE: BISECT_SKIP,
            Outcome.BAD_INPUT: BISECT_ABORT, Outcome.LAB_BROKE: BISECT_ABORT}[classify(exc)]


def bisect_verdict(verdicts: Sequence[RunsVerdict]) -> int:
    """A commit's code from its checks' verdicts: any FAIL is bad, else any
    FLAKY cannot be called (skip), else good."""
    if RunsVerdict.FAIL in verdicts:
        return BISECT_BAD
    if RunsVerdict.FLAKY in verdicts:
        return BISECT_SKIP
    return BISECT_GOOD


class RunsVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    FLAKY = "flaky"
    # Not run: the kernel had already failed the same way in several cases
    # (lab.jobs.runs stops early; --keep-going runs every case).
    NOT_RUN = "not-run"


@dataclass(frozen=True)
class FlakePolicy:
    """How N runs of one check become one verdict.

    PASS only when every run passed: one failure means the bug can happen,
    and calling that a pass would hide it (or steer a bisection past the
    real first-bad candidate). FAIL when the failing fraction reaches
    `fail_fraction`. In between the check is FLAKY: `lab test` counts it as
    failed (exit 1) and says so; a bisection cannot call it and skips.
    """

    fail_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.fail_fraction <= 1.0:
            raise ValueError(f"the flake threshold must be in (0, 1], not {self.fail_fraction}")

    def judge(self, passes: Sequence[bool]) -> RunsVerdict:
        if not passes:
            raise ValueError("judge needs at least one run")
        failing = sum(1 for p in passes if not p) / len(passes)
        if failing == 0:
            return RunsVerdict.PASS
        if failing >= self.fail_fraction:
            return RunsVerdict.FAIL
        return RunsVerdict.FLAKY
