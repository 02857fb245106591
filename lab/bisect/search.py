"""Bisection over an ordered list of candidates: patch-series versions or commits.

The search is one binary search for the first candidate that satisfies a
predicate ("is BAD" for first-bad, "is GOOD" for first-good), with git bisect's
rules: the list is ordered oldest -> newest, the ends are assumed to be on
either side of the change unless `verify_ends` asks to test them, a SKIP takes
the candidate out of the search, and when skips hide the answer we report the
range that could hold it instead of guessing.

The search itself is pure (it only calls the tester); the git helpers at the
bottom are the only code here that starts processes, and they go through
`lab.proc` like everything else.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from lab.errors import ConfigError, LabError
from lab.host import proc
from lab.kernel import gittree

log = logging.getLogger(__name__)

LookingFor = Literal["first-bad", "first-good"]
LOOKING_FOR: tuple[LookingFor, ...] = ("first-bad", "first-good")

GIT_TIMEOUT_S = 300
# Checking out a kernel tree rewrites ~80k files; a slow disk needs minutes.
CHECKOUT_TIMEOUT_S = 1800
SHORT_SHA = 12
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class Verdict(StrEnum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


class InfraFailure(LabError):
    """Raised by a tester when the lab broke (host, QEMU, network), not the kernel.

    The bisection retries the step; it never turns this into a verdict, because
    a wrong verdict silently sends the search into the wrong half.
    """


class BisectAborted(LabError):
    """The bisection gave up (a step kept failing for infrastructure reasons).

    `steps` is the log of the steps that did complete, so the work done so far
    is not lost; `excerpt` holds the same log as text for the CLI.
    """

    def __init__(
        self,
        message: str,
        *,
        steps: tuple[Step, ...],
        log_path: Path | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message, log_path=log_path, excerpt=excerpt)
        self.steps = steps


@dataclass(frozen=True)
class Step:
    """One tested candidate.

    `index` is the candidate's position in the list; `bisect` fills it in (a
    tester knows candidates by name only, so it may pass any value, e.g. -1).
    `evidence` is one short line for the step log: observed figures, or the
    first line of a build error. `details` is free-form and must be JSON-able.
    """

    candidate: str
    index: int
    verdict: Verdict
    seconds: float = 0.0
    evidence: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # A SKIP because the candidate does not apply, build or boot (not a flaky case).
    untestable: bool = False
    infra_retries: int = 0  # how often the lab broke before this answer

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "index": self.index,
            "verdict": self.verdict.value,
            "seconds": round(self.seconds, 3),
            "evidence": self.evidence,
            "details": self.details,
            "infra_retries": self.infra_retries,
        }


Tester = Callable[[str], Step]


@dataclass(frozen=True)
class BisectResult:
    """The outcome of `bisect`.

    `first` is the answer, or None when there is none: the ends did not differ
    as expected (`verify_ends`), or skips hid it, in which case `inconclusive`
    lists every candidate that could be it, oldest first.
    """

    candidates: tuple[str, ...]
    steps: tuple[Step, ...]
    first: str | None
    looking_for: LookingFor
    inconclusive: tuple[str, ...]
    message: str

    @property
    def tested(self) -> tuple[str, ...]:
        return tuple(s.candidate for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "looking_for": self.looking_for,
            "first": self.first,
            "inconclusive": list(self.inconclusive),
            "message": self.message,
            "candidates": list(self.candidates),
            "steps": [s.to_dict() for s in self.steps],
        }


# --- verdicts ----------------------------------------------------------------


def verdict_tester(fn: Callable[[str], Verdict | tuple[Verdict, str]]) -> Tester:
    """Adapt a callable returning a Verdict (or a (Verdict, evidence) pair) into a Tester.

    The adapter measures the wall time, so simple testers need not.
    """

    def test(candidate: str) -> Step:
        start = time.monotonic()
        outcome = fn(candidate)
        verdict, evidence = outcome if isinstance(outcome, tuple) else (outcome, "")
        return Step(candidate, -1, Verdict(verdict), time.monotonic() - start, evidence)

    return test


def format_step(step: Step) -> str:
    """One line of the step log, e.g. for an `on_step` callback that prints."""
    retries = step.infra_retries
    note = f" (after {retries} infra retr{'y' if retries == 1 else 'ies'})" if retries else ""
    return (
        f"#{step.index:<4} {short(step.candidate):<{SHORT_SHA}} {step.verdict.value:<4}"
        f" {step.seconds:8.1f}s  {step.evidence}{note}"
    ).rstrip()


# --- the search ----------------------------------------------------------------


class _Runner:
    """Runs the tester on candidates: caching, infra retries and the step log."""

    def __init__(
        self,
        candidates: tuple[str, ...],
        test: Tester,
        max_infra_retries: int,
        on_step: Callable[[Step], None] | None,
    ) -> None:
        self.candidates = candidates
        self.test = test
        self.max_infra_retries = max_infra_retries
        self.on_step = on_step
        self.steps: list[Step] = []
        self.cache: dict[int, Step] = {}

    def run(self, index: int) -> Step:
        # The search never revisits a candidate, but a build + boot + suite
        # costs minutes, so make "never twice" structural, not a property of
        # the loop.
        if index in self.cache:
            return self.cache[index]
        step = self._attempt(index)
        self.cache[index] = step
        self.steps.append(step)
        if self.on_step:
            self.on_step(step)
        return step

    def _attempt(self, index: int) -> Step:
        candidate = self.candidates[index]
        failures: list[InfraFailure] = []
        while len(failures) <= self.max_infra_retries:
            try:
                step = self.test(candidate)
            except InfraFailure as exc:
                failures.append(exc)
                log.warning("bisect: %s: infrastructure failure (%d): %s",
                            candidate, len(failures), exc)
                continue
            return self._checked(step, index, len(failures))
        raise self._aborted(candidate, failures)

    def _checked(self, step: Step, index: int, retries: int) -> Step:
        candidate = self.candidates[index]
        if not isinstance(step, Step):
            raise TypeError(f"tester returned {type(step).__name__}, not Step "
                            "(wrap a Verdict-returning callable with verdict_tester)")
        if step.candidate != candidate:
            raise ValueError(f"tester was asked about {candidate!r} "
                             f"but answered about {step.candidate!r}")
        return dataclasses.replace(step, index=index, verdict=Verdict(step.verdict),
                                   infra_retries=retries)

    def _aborted(self, candidate: str, failures: list[InfraFailure]) -> BisectAborted:
        lines = ["steps completed:"] + [f"  {format_step(s)}" for s in self.steps]
        if not self.steps:
            lines.append("  (none)")
        lines.append(f"infrastructure failures testing {short(candidate)}:")
        lines += [f"  {i}: {exc.describe()}" for i, exc in enumerate(failures, 1)]
        return BisectAborted(
            f"bisect aborted: testing {short(candidate)} failed {len(failures)} times for "
            "infrastructure reasons; no verdict was guessed",
            steps=tuple(self.steps),
            log_path=failures[-1].log_path,
            excerpt="\n".join(lines),
        )


def _pick(lo: int, hi: int, skipped: Set[int]) -> int | None:
    """The candidate to test next: strictly between lo and hi, not skipped, nearest the middle.

    Ties go to the older candidate so that runs are reproducible. None means
    nothing testable is left in the range.
    """
    mid = (lo + hi) // 2
    open_ = [i for i in range(lo + 1, hi) if i not in skipped]
    if not open_:
        return None
    return min(open_, key=lambda i: (abs(i - mid), i))


def _ends_problem(
    first: Step, last: Step, target: Verdict, looking_for: LookingFor
) -> str | None:
    """Why the tested ends make bisecting meaningless, or None when they are fine."""
    word = target.value
    other = Verdict.GOOD if target is Verdict.BAD else Verdict.BAD
    problems = []
    for step, want in ((first, other), (last, target)):
        if step.verdict is Verdict.SKIP:
            problems.append(f"{short(step.candidate)} could not be judged (skip)")
        elif step.verdict is not want:
            problems.append(f"{short(step.candidate)} is already {step.verdict.value}"
                            if step is first else
                            f"{short(step.candidate)} is still {step.verdict.value}")
    if not problems:
        return None
    return (f"{'; '.join(problems)}: nothing to bisect (looking for the {looking_for}, the ends "
            f"must be {other.value} then {word})")


def bisect(
    candidates: Sequence[str],
    test: Tester,
    *,
    looking_for: LookingFor = "first-bad",
    verify_ends: bool = False,
    max_infra_retries: int = 2,
    on_step: Callable[[Step], None] | None = None,
) -> BisectResult:
    """Find the first candidate (oldest -> newest order) where the behaviour changes.

    first-bad: candidates[0] is taken as GOOD and candidates[-1] as BAD; the
    answer is the first BAD candidate after the last GOOD one. first-good swaps
    the roles (candidates[0] BAD, candidates[-1] GOOD, find the first GOOD).
    With `verify_ends` both ends are tested first (for a patch series there is
    no --good/--bad the user vouched for); if they do not differ as expected
    the result has `first=None` and a message saying why.

    A SKIP verdict removes the candidate and the search tries the untested one
    nearest the middle instead. If skips leave several candidates that could be
    the answer, `first` is None and `inconclusive` lists them.

    `test` is called at most once per candidate, about log2(len) times in all.
    An InfraFailure from it is retried `max_infra_retries` times, then the
    bisection raises BisectAborted; any other exception propagates.
    """
    cands = tuple(candidates)
    _validate(cands, looking_for, max_infra_retries)
    target = Verdict.BAD if looking_for == "first-bad" else Verdict.GOOD
    runner = _Runner(cands, test, max_infra_retries, on_step)

    def result(first: str | None, inconclusive: tuple[str, ...], message: str) -> BisectResult:
        return BisectResult(cands, tuple(runner.steps), first, looking_for, inconclusive, message)

    lo, hi = 0, len(cands) - 1  # lo: known not-target, hi: known target
    if verify_ends:
        problem = _ends_problem(runner.run(lo), runner.run(hi), target, looking_for)
        if problem:
            return result(None, (), problem)
    skipped: set[int] = set()
    while (index := _pick(lo, hi, skipped)) is not None:
        verdict = runner.run(index).verdict
        if verdict is Verdict.SKIP:
            skipped.add(index)
        elif verdict is target:
            hi = index
        else:
            lo = index
    return _conclude(cands, lo, hi, skipped, looking_for, len(runner.steps), result)


def _validate(cands: tuple[str, ...], looking_for: str, max_infra_retries: int) -> None:
    if looking_for not in LOOKING_FOR:
        raise ConfigError(f"looking for {looking_for!r}: expected one of {', '.join(LOOKING_FOR)}")
    if len(cands) < 2:
        raise ConfigError(f"bisect needs at least two candidates, got {len(cands)}")
    if len(set(cands)) != len(cands):
        raise ConfigError("bisect candidates must be distinct")
    if max_infra_retries < 0:
        raise ValueError(f"max_infra_retries must be >= 0, got {max_infra_retries}")


def _conclude(
    cands: tuple[str, ...],
    lo: int,
    hi: int,
    skipped: Set[int],
    looking_for: LookingFor,
    tested: int,
    result: Callable[[str | None, tuple[str, ...], str], BisectResult],
) -> BisectResult:
    # Everything strictly between lo and hi was skipped (else the loop would
    # have tested it), so the answer is hi or any of those.
    what = looking_for.replace("-", " ")
    count = f"tested {tested} of {len(cands)} candidates"
    if hi == lo + 1:
        return result(cands[hi], (), f"{what}: {short(cands[hi])} ({count})")
    maybe = cands[lo + 1:hi + 1]
    names = " ".join(short(c) for c in maybe)
    skips = " ".join(short(cands[i]) for i in sorted(skipped) if lo < i < hi)
    return result(None, maybe, f"the {what} could be any of: {names} "
                  f"(skipped: {skips}; {count})")


# --- git ---------------------------------------------------------------------
#
# A note for whoever builds test repos from a real kernel tree: Debian's
# linux-source .gitignore contains `/*` (it ignores everything at the top
# level), so `git add .` adds nothing there; use `git add -f`. Tracked files
# are unaffected by ignore rules, so the helpers below work on such repos.


def short(rev: str) -> str:
    """A full commit id shortened for display; anything else (v3, HEAD~2) as it is."""
    return rev[:SHORT_SHA] if _SHA.fullmatch(rev) else rev


def _git(repo: Path, *args: str, log_path: Path | None = None, check: bool = True,
         timeout: float = GIT_TIMEOUT_S) -> proc.CommandResult:
    # The user's global git config (hooks, signing) stays out (lab.kernel.gittree).
    return gittree.git(repo, *args, log_path=log_path, check=check, timeout=timeout,
                       error=LabError)


def resolve(repo: Path, rev: str, *, log_path: Path | None = None) -> str:
    """The full sha of commit `rev` in `repo`; ConfigError naming `rev` if there is none."""
    # A leading '-' would be read as an option, not a revision.
    if not rev or rev.startswith("-"):
        raise ConfigError(f"{rev!r} is not a valid revision")
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}",
               log_path=log_path, check=False)
    sha = out.stdout.strip()
    if not out.ok or not _SHA.fullmatch(sha):
        raise ConfigError(f"{rev!r} is not a commit in {repo}")
    return sha


def rev_list(repo: Path, good: str, bad: str, *, log_path: Path | None = None) -> list[str]:
    """Full shas from `good` (first) to `bad` (last) along bad's first-parent history.

    Only commits that descend from `good` are listed (--ancestry-path), and
    side branches are represented by their merge commit (--first-parent), so
    the list is linear and every commit on it was a state of the main line.
    """
    good_sha = resolve(repo, good, log_path=log_path)
    bad_sha = resolve(repo, bad, log_path=log_path)
    if good_sha == bad_sha:
        raise ConfigError(f"good {good!r} and bad {bad!r} are the same commit")
    ancestor = _git(repo, "merge-base", "--is-ancestor", good_sha, bad_sha,
                    log_path=log_path, check=False)
    if ancestor.exit_status == 1:
        raise ConfigError(f"good {good!r} is not an ancestor of bad {bad!r}")
    if not ancestor.ok:
        raise LabError(f"git merge-base failed in {repo}", log_path=log_path,
                       excerpt=ancestor.tail())
    out = _git(repo, "rev-list", "--reverse", "--ancestry-path", "--first-parent",
               f"{good_sha}..{bad_sha}", log_path=log_path)
    # proc.run merges stderr into stdout; keep only lines that are commit ids.
    shas = [line for line in out.stdout.split() if _SHA.fullmatch(line)]
    if not shas or shas[-1] != bad_sha:
        raise LabError(f"git rev-list {short(good_sha)}..{short(bad_sha)} did not end at "
                       f"{bad!r}", log_path=log_path, excerpt=out.tail())
    return [good_sha, *shas]
