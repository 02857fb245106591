"""Bisection logic against recorded outcomes, and the git helpers on tiny real repos."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from lab.bisect.search import (
    BisectAborted,
    InfraFailure,
    Step,
    Verdict,
    bisect,
    format_step,
    rev_list,
    short,
    verdict_tester,
)
from lab.errors import ConfigError
from lab.host import proc

G, B, S = Verdict.GOOD, Verdict.BAD, Verdict.SKIP
SERIES = ["v1", "v2", "v3", "v4", "v5"]


class Recorded:
    """A tester replaying an outcome table, counting calls per candidate."""

    def __init__(self, table: Mapping[str, Verdict]) -> None:
        self.table = table
        self.calls: Counter[str] = Counter()

    def __call__(self, candidate: str) -> Step:
        self.calls[candidate] += 1
        return Step(candidate, -1, self.table[candidate], 1.5, f"recorded {candidate}")


# --- the search on the patch series ---------------------------------------------


def test_first_good_truncate_race_fixed_in_v4():
    tester = Recorded(dict(zip(SERIES, [B, B, B, G, G], strict=True)))
    result = bisect(SERIES, tester, looking_for="first-good", verify_ends=True)
    assert result.first == "v4"
    assert result.inconclusive == ()
    assert max(tester.calls.values()) == 1
    assert len(result.steps) <= math.ceil(math.log2(len(SERIES))) + 2
    assert "first good: v4" in result.message
    assert [s.index for s in result.steps] == [SERIES.index(s.candidate) for s in result.steps]


def test_first_good_right_after_the_first_version():
    tester = Recorded(dict(zip(SERIES, [B, G, G, G, G], strict=True)))
    result = bisect(SERIES, tester, looking_for="first-good", verify_ends=True)
    assert result.first == "v2"
    assert len(result.steps) <= math.ceil(math.log2(len(SERIES))) + 2


def test_first_bad_with_assumed_ends_does_not_test_them():
    tester = Recorded({"v2": G, "v3": B, "v4": B})  # no entry for v1/v5: a KeyError if tested
    result = bisect(SERIES, tester)
    assert result.first == "v3"
    assert result.looking_for == "first-bad"
    assert set(tester.calls) <= {"v2", "v3", "v4"}


def test_two_candidates_need_no_test():
    result = bisect(["good", "bad"], Recorded({}))
    assert result.first == "bad"
    assert result.steps == ()


@pytest.mark.parametrize(
    ("outcomes", "expect"),
    [
        ([G, G, G, G, G], "v1 is already good"),
        ([B, B, B, B, B], "v5 is still bad"),
        ([G, B, B, B, B], "v1 is already good; v5 is still bad"),
        ([S, G, G, G, G], "v1 could not be judged"),
    ],
)
def test_verify_ends_refuses_when_the_ends_do_not_differ(outcomes, expect):
    tester = Recorded(dict(zip(SERIES, outcomes, strict=True)))
    result = bisect(SERIES, tester, looking_for="first-good", verify_ends=True)
    assert result.first is None
    assert result.inconclusive == ()
    assert expect in result.message
    assert "nothing to bisect" in result.message
    assert result.tested == ("v1", "v5")  # it stopped right after the ends


def test_skip_next_to_the_answer_is_inconclusive():
    tester = Recorded(dict(zip(SERIES, [B, B, S, G, G], strict=True)))
    result = bisect(SERIES, tester, looking_for="first-good", verify_ends=True)
    assert result.first is None
    assert result.inconclusive == ("v3", "v4")
    assert "could be any of: v3 v4" in result.message
    assert "skipped: v3" in result.message


def test_a_skip_away_from_the_answer_is_routed_around():
    tester = Recorded(dict(zip(SERIES, [G, S, G, B, B], strict=True)))
    result = bisect(SERIES, tester, verify_ends=True)
    assert result.first == "v4"


# --- infrastructure failures --------------------------------------------------


class Flaky:
    """Raises InfraFailure for the first `failures` attempts on `victim`."""

    def __init__(self, table: Mapping[str, Verdict], victim: str, failures: int) -> None:
        self.inner = Recorded(table)
        self.victim = victim
        self.left = failures
        self.attempts: Counter[str] = Counter()

    def __call__(self, candidate: str) -> Step:
        self.attempts[candidate] += 1
        if candidate == self.victim and self.left:
            self.left -= 1
            raise InfraFailure(f"ssh to guest timed out ({candidate})",
                               log_path=Path("/tmp/boot.log"))
        return self.inner(candidate)


def test_infra_failure_twice_then_success_is_retried():
    table = dict(zip(SERIES, [B, B, B, G, G], strict=True))
    tester = Flaky(table, victim="v3", failures=2)
    seen: list[Step] = []
    result = bisect(SERIES, tester, looking_for="first-good", on_step=seen.append)
    assert result.first == "v4"
    assert tester.attempts["v3"] == 3
    step = next(s for s in result.steps if s.candidate == "v3")
    assert step.verdict is B
    assert step.infra_retries == 2
    assert "after 2 infra retries" in format_step(step)
    assert seen == list(result.steps)  # on_step saw every step, once, in order


def test_three_infra_failures_abort_with_the_step_log():
    table = dict(zip(SERIES, [B, B, B, G, G], strict=True))
    tester = Flaky(table, victim="v4", failures=3)
    with pytest.raises(BisectAborted) as caught:
        bisect(SERIES, tester, looking_for="first-good")
    err = caught.value
    assert tester.attempts["v4"] == 3
    assert [s.candidate for s in err.steps] == ["v3"]  # the step before the failing one
    assert "no verdict was guessed" in str(err)
    assert "v3" in err.excerpt and "ssh to guest timed out (v4)" in err.excerpt
    assert err.log_path == Path("/tmp/boot.log")
    assert err.exit_code == 3


def test_other_exceptions_propagate():
    def broken(candidate: str) -> Step:
        raise RuntimeError("bug in the tester")

    with pytest.raises(RuntimeError):
        bisect(SERIES, broken)


def test_verdict_tester_adapter_and_json():
    table = dict(zip(SERIES, [B, B, B, G, G], strict=True))
    answers = {c: (v, f"{c}: 3/3 runs") if c == "v3" else v for c, v in table.items()}
    result = bisect(SERIES, verdict_tester(answers.__getitem__), looking_for="first-good")
    assert result.first == "v4"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["first"] == "v4"
    assert data["looking_for"] == "first-good"
    v3 = next(s for s in data["steps"] if s["candidate"] == "v3")
    assert v3 == {"candidate": "v3", "index": 2, "verdict": "bad", "seconds": v3["seconds"],
                  "evidence": "v3: 3/3 runs", "details": {}, "infra_retries": 0}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="at least two"):
        bisect(["v1"], Recorded({}))
    with pytest.raises(ConfigError, match="distinct"):
        bisect(["v1", "v2", "v1"], Recorded({}))
    with pytest.raises(ConfigError, match="first-bad"):
        bisect(SERIES, Recorded({}), looking_for="first-ugly")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="verdict_tester"):
        bisect(SERIES, lambda c: G)  # type: ignore[arg-type,return-value]


def test_short():
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert short(sha) == "0123456789ab"
    assert short("v3") == "v3"
    assert short("HEAD~2") == "HEAD~2"


# --- longer lists against a brute-force oracle ------------------------------------------


def oracle(outcomes: list[Verdict], target: Verdict) -> tuple[int | None, range]:
    """What a bisection must conclude, found by looking at every outcome.

    The outcomes are monotonic apart from skips, and the ends are assumed. The
    answer lies between the last decided non-target before the change and the
    first decided target; if only skips sit between them, the range is all of them.
    """
    n = len(outcomes)
    decided = [i for i in range(n) if i in (0, n - 1) or outcomes[i] is not S]
    hi = next(i for i in decided if i == n - 1 or outcomes[i] is target)
    lo = max(i for i in decided if i < hi)
    return (hi if hi == lo + 1 else None), range(lo + 1, hi + 1)


def make_outcomes(n: int, answer: int, target: Verdict, skip_rate: float,
                  rng: random.Random) -> list[Verdict]:
    other = G if target is B else B
    outcomes = [other if i < answer else target for i in range(n)]
    for i in range(1, n - 1):
        if rng.random() < skip_rate:
            outcomes[i] = S
    return outcomes


@pytest.mark.parametrize("looking_for", ["first-bad", "first-good"])
@pytest.mark.parametrize("seed", range(40))
def test_hundred_commits_answer_at_37_with_random_skips(seed, looking_for):
    rng = random.Random(seed)
    target = B if looking_for == "first-bad" else G
    shas = [f"{i:040x}" for i in range(100)]
    outcomes = make_outcomes(100, 37, target, skip_rate=rng.choice([0.0, 0.1, 0.3, 0.6]),
                             rng=rng)
    tester = Recorded(dict(zip(shas, outcomes, strict=True)))
    result = bisect(shas, tester, looking_for=looking_for)
    first, could_be = oracle(outcomes, target)
    assert max(tester.calls.values()) == 1
    if first is None:
        assert result.first is None
        assert result.inconclusive == tuple(shas[i] for i in could_be)
        assert shas[37] in result.inconclusive
    else:
        assert result.first == shas[first] == shas[37]
        assert result.inconclusive == ()


def test_no_skips_tests_about_log2_n_for_every_answer():
    for n in range(2, 130):
        bound = math.ceil(math.log2(n)) + 2
        for answer in range(1, n):
            outcomes = [G if i < answer else B for i in range(n)]
            names = [f"c{i}" for i in range(n)]
            for verify in (False, True):
                tester = Recorded(dict(zip(names, outcomes, strict=True)))
                result = bisect(names, tester, verify_ends=verify)
                assert result.first == names[answer]
                assert len(result.steps) <= bound, (n, answer, verify)


# --- git helpers on a tiny real repo ------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return proc.run(["git", "-C", repo, *args], timeout=60).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """Six linear commits; commit i writes `version` = i. Returns (repo, shas)."""
    # Keep the user's ~/.gitconfig (signing, hooks, default branch) out of it.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Lab Test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "lab@example.invalid")
    root = tmp_path / "user-repo"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    shas = []
    for i in range(6):
        (root / "version").write_text(f"{i}\n")
        (root / f"file{i}").write_text(f"added in {i}\n")
        # -f: a real kernel tree's .gitignore may ignore everything (Debian's has `/*`).
        git(root, "add", "-f", "version", f"file{i}")
        git(root, "commit", "--quiet", "-m", f"commit {i}")
        shas.append(git(root, "rev-parse", "HEAD").strip())
    return root, shas


def test_rev_list_order_and_endpoints(repo):
    root, shas = repo
    assert rev_list(root, shas[1], "main") == shas[1:]
    assert rev_list(root, "main~4", "main~1") == shas[1:5]
    assert rev_list(root, shas[0][:7], shas[1]) == shas[0:2]


def test_rev_list_follows_the_first_parent(repo):
    root, shas = repo
    git(root, "checkout", "--quiet", "-b", "side", shas[2])
    (root / "side").write_text("side\n")
    git(root, "add", "side")
    git(root, "commit", "--quiet", "-m", "side work")
    side = git(root, "rev-parse", "HEAD").strip()
    git(root, "checkout", "--quiet", "main")
    git(root, "merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    merge = git(root, "rev-parse", "HEAD").strip()
    listed = rev_list(root, shas[0], "main")
    assert listed == [*shas, merge]
    assert side not in listed


def test_rev_list_rejects_unknown_and_unrelated_revs(repo):
    root, shas = repo
    with pytest.raises(ConfigError, match="'no-such-rev'"):
        rev_list(root, shas[0], "no-such-rev")
    with pytest.raises(ConfigError, match="'v9.99'"):
        rev_list(root, "v9.99", shas[3])
    with pytest.raises(ConfigError, match="not an ancestor"):
        rev_list(root, shas[4], shas[1])
    with pytest.raises(ConfigError, match="same commit"):
        rev_list(root, "main", shas[5])
    with pytest.raises(ConfigError, match="not a valid revision"):
        rev_list(root, "--all", shas[5])

