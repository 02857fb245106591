"""The tree's and the user's tests judged as an A/B (lab.suite.ab)."""

import json

from lab.results import AbRole, CheckKind, CheckResult, SubResult
from lab.suite import ab


def sub(name, ok=True, directive=""):
    return SubResult(name, ok, directive)


def check(variant, passed, subtests=(), kind=CheckKind.KSELFTEST, name="kselftest:memfd",
          observed="TAP 13: ..."):
    return CheckResult(name=name, variant=variant, passed=passed, expected="all ok",
                       observed=observed, subtests=tuple(subtests),
                       verdict="pass" if passed else "fail", kind=kind)


def by_variant(checks):
    return {c.variant: c for c in checks}


def test_a_sub_test_failing_on_both_sides_is_pre_existing_not_a_regression():
    base = check("baseline", False, [sub("a"), sub("b", ok=False)])
    head = check("patched", False, [sub("a"), sub("b", ok=False)])
    got = by_variant(ab.judge([base, head], "baseline", "patched"))
    assert got["patched"].passed and got["baseline"].passed
    assert got["patched"].ab.pre_existing == ("b",)
    assert got["patched"].ab.regressions == ()
    assert "failing on baseline too: b" in got["patched"].observed
    assert got["baseline"].ab.failures == ("b",)
    assert got["baseline"].ab.role is AbRole.BASE and got["patched"].ab.role is AbRole.HEAD


def test_a_sub_test_passing_on_the_base_and_failing_on_the_head_fails_the_head():
    base = check("baseline", True, [sub("a"), sub("b")])
    head = check("patched", False, [sub("a"), sub("b", ok=False)])
    got = by_variant(ab.judge([base, head], "baseline", "patched"))
    assert not got["patched"].passed
    assert got["patched"].ab.regressions == ("b",)
    assert "regressed against baseline: b" in got["patched"].observed


def test_a_new_failing_sub_test_beside_a_pre_existing_one_is_a_regression():
    base = check("baseline", False, [sub("a", ok=False)])
    head = check("patched", False, [sub("a", ok=False), sub("new", ok=False)])
    got = by_variant(ab.judge([base, head], "baseline", "patched"))
    assert not got["patched"].passed
    assert got["patched"].ab.regressions == ("new",)


def test_failing_as_a_whole_counts_against_a_base_that_passed():
    base = check("baseline", True, [sub("a")])
    head = check("patched", False, [], observed="timed out after 300s")
    assert not by_variant(ab.judge([base, head], "baseline", "patched"))["patched"].passed
    base_too = check("baseline", False, [], observed="exit 1")
    assert by_variant(ab.judge([base_too, head], "baseline", "patched"))["patched"].passed


def test_skips_are_counted_and_are_not_failures():
    base = check("baseline", True, [sub("a", ok=True, directive="SKIP")])
    head = check("patched", True, [sub("a", ok=False, directive="SKIP"), sub("b")])
    got = by_variant(ab.judge([base, head], "baseline", "patched"))["patched"]
    assert got.passed and (got.ab.skipped_here, got.ab.skipped_base) == (1, 1)


def test_the_labs_own_cases_and_lone_variants_keep_their_own_verdict():
    case_b = check("baseline", False, kind=CheckKind.CASE, name="flag-off")
    case_p = check("patched", False, kind=CheckKind.CASE, name="flag-off")
    assert [c.passed for c in ab.judge([case_b, case_p], "baseline", "patched")] == [False, False]
    alone = check("patched", False, [sub("b", ok=False)])
    assert not ab.judge([alone], "baseline", "patched")[0].passed
    only_base = check("baseline", False, [sub("b", ok=False)])
    assert not ab.judge([only_base], "baseline", "patched")[0].passed


def test_judging_again_gives_the_same_answer_as_judging_once():
    # `lab report --merge` judges again once the base's shard has joined.
    base = check("baseline", True, [sub("a"), sub("b")])
    head = check("patched", False, [sub("b", ok=False)])
    once = ab.judge([base, head], "baseline", "patched")
    assert ab.judge(once, "baseline", "patched") == once
    # A head judged alone in its shard is judged against the base after the merge.
    alone = ab.judge([check("patched", False, [sub("b", ok=False)])], "baseline", "patched")
    merged = ab.judge([base, *alone], "baseline", "patched")
    assert by_variant(merged)["patched"].ab.regressions == ("b",)


def test_a_kind_round_trips_through_results_json():
    c = check("patched", True, kind=CheckKind.KUNIT)
    again = CheckResult.from_dict(c.to_dict())
    assert again.kind is CheckKind.KUNIT and again == c
    old = {k: v for k, v in c.to_dict().items() if k != "kind"}
    assert CheckResult.from_dict(old).kind is CheckKind.CASE


def test_junit_has_a_testcase_per_sub_test_judged_like_the_check():
    import xml.etree.ElementTree as ET

    from lab.report.junit import render_junit
    from lab.results import RunResults

    base = check("baseline", False, [sub("a"), sub("b", ok=False), sub("c", directive="SKIP")])
    head = check("patched", False, [sub("a", ok=False), sub("b", ok=False),
                                    sub("c", directive="SKIP")])
    results = RunResults("r", "now", variants={"baseline": {}, "patched": {}},
                         checks=tuple(ab.judge([base, head], "baseline", "patched")))
    root = ET.fromstring(render_junit(results))
    cases = {(s.get("name"), c.get("name")): c for s in root for c in s.findall("testcase")}
    assert cases[("patched", "a")].find("failure") is not None  # a regression
    assert "baseline too" in cases[("patched", "b")].find("skipped").get("message")
    assert cases[("baseline", "b")].find("skipped") is not None  # the reference's own
    assert cases[("patched", "c")].find("skipped").get("message") == "SKIP"
    patched = next(s for s in root if s.get("name") == "patched")
    assert (patched.get("tests"), patched.get("failures")) == ("4", "2")  # check + a


def test_kernel_evidence_is_a_typed_record_that_round_trips_and_reads_older_files():
    from lab.results import KernelEvidence

    c = CheckResult(name="x", variant="patched", passed=False, expected="e", observed="o",
                    kernel=KernelEvidence("hang", "blocked for more than 10 seconds",
                                          ("hung task",), 2, "[ 1.0] INFO: task dd"))
    assert CheckResult.from_dict(c.to_dict()) == c
    # An older file: none of the typed fields, the kernel failure in details.
    older = {k: v for k, v in c.to_dict().items() if k in ("name", "variant", "passed",
                                                          "expected", "observed")}
    older["details"] = {"kernel_failure": {"kind": "hang", "summary": "s",
                                           "blocked_tasks": "task:dd state:D"}}
    got = CheckResult.from_dict(older)
    assert got.kernel == KernelEvidence("hang", "s", blocked_tasks=0)
    assert "kernel_failure" not in got.details


def test_a_judged_check_round_trips_and_older_files_keep_their_typed_fields():
    base = check("baseline", True, [sub("a"), sub("b", directive="SKIP")])
    head = check("patched", False, [sub("a", ok=False), sub("b", directive="SKIP")])
    for judged in ab.judge([base, head], "baseline", "patched"):
        assert CheckResult.from_dict(json.loads(json.dumps(judged.to_dict()))) == judged
    # Before the typed fields, results.json kept these as keys of `details`.
    older = {"name": "kselftest:memfd", "variant": "patched", "passed": True,
             "expected": "e", "observed": "o", "kind": "kselftest",
             "details": {"number": 40, "title": "t", "exit_status": 0, "timed_out": True,
                         "cached_from": "run-1",
                         "subtests": [{"name": "a", "ok": False, "directive": "SKIP"}],
                         "ab": {"role": "head", "base": "baseline", "regressions": [],
                                "pre_existing": ["x"], "failed_as_a_whole": "",
                                "base_failed_as_a_whole": "",
                                "skipped": {"here": 1, "base": 0},
                                "own": {"passed": False, "observed": "raw",
                                        "verdict": "fail"}}}}
    got = CheckResult.from_dict(older)
    assert (got.number, got.title, got.timed_out, got.cached_from) == (40, "t", True, "run-1")
    assert got.subtests == (SubResult("a", False, "SKIP"),) and got.details == {"exit_status": 0}
    assert got.ab.role is AbRole.HEAD and got.ab.pre_existing == ("x",)
    assert (got.ab.skipped_here, got.ab.own.observed) == (1, "raw")
    assert ab.judge([got], "baseline", "patched")[0].observed == "raw"  # the raw verdict back


def test_cases_stop_after_the_kernel_failed_the_same_way_in_enough_of_them():
    import dataclasses

    from lab.config import LabConfig, TestsConfig
    from lab.jobs.runs import _enough_said
    from lab.results import KernelEvidence

    cfg = LabConfig(tests=TestsConfig(stop_after_same_failures=2))

    def failed(name, kind):
        return CheckResult(name=name, variant="v", passed=False, expected="e", observed="o",
                           kernel=KernelEvidence(kind, "s"))

    seen: dict = {}
    assert not _enough_said(cfg, failed("a", "hang"), seen)
    assert not _enough_said(cfg, failed("b", "error"), seen)  # not fatal: not counted
    assert not _enough_said(cfg, check("v", False, kind=CheckKind.CASE), seen)
    assert _enough_said(cfg, failed("c", "hang"), seen) and seen == {"hang": ["a", "c"]}
    going = dataclasses.replace(cfg, tests=TestsConfig(stop_after_same_failures=2,
                                                       keep_going=True))
    assert not _enough_said(going, failed("d", "hang"), {"hang": ["a", "c"]})


def test_the_report_shows_each_sub_test_side_by_side_with_the_ab_reading():
    from lab.report.sections import subtests_blocks

    base = check("baseline", False, [sub("a"), sub("b", ok=False), sub("c", directive="SKIP")])
    head = check("patched", False, [sub("a", ok=False), sub("b", ok=False),
                                    sub("c", directive="SKIP")])
    (block,) = subtests_blocks(ab.judge([base, head], "baseline", "patched"))
    assert block.title == "Sub-results of kselftest:memfd" and not block.collapsed
    assert block.tables[0].rows == (("a", "ok", "NOT OK", "regression"),
                                    ("b", "NOT OK", "NOT OK", "fails on both"),
                                    ("c", "skip", "skip", ""))
    assert subtests_blocks([check("patched", True, kind=CheckKind.CASE, name="flag-off")]) == []


def test_the_kernels_failure_on_the_head_is_never_excused_by_the_base():
    import dataclasses

    from lab.results import KernelEvidence

    base = check("baseline", False, [sub("a", ok=False)])
    warned = dataclasses.replace(check("patched", False, [sub("a", ok=False)]),
                                 kernel=KernelEvidence("report", "kernel warning: x"))
    got = by_variant(ab.judge([base, warned], "baseline", "patched"))["patched"]
    assert not got.passed and "the kernel's report on this side" in got.observed
    timed_out = dataclasses.replace(check("baseline", False), timed_out=True)
    crashed = dataclasses.replace(check("patched", False), kernel=KernelEvidence("crash", "BUG"))
    assert not by_variant(ab.judge([timed_out, crashed], "baseline", "patched"))[
        "patched"].passed
    # A time limit on both sides is the test's, not the patch's.
    slow = dataclasses.replace(check("patched", False), timed_out=True)
    assert by_variant(ab.judge([timed_out, slow], "baseline", "patched"))["patched"].passed


def test_a_base_run_the_early_stop_left_out_is_no_reference():
    import dataclasses

    from lab.verdict import RunsVerdict

    not_run = dataclasses.replace(check("baseline", False), verdict=RunsVerdict.NOT_RUN.value)
    head = check("patched", False, [sub("a", ok=False)])
    got = by_variant(ab.judge([not_run, head], "baseline", "patched"))
    assert got["baseline"] == not_run  # left as it is: not run, not a pass
    assert not got["patched"].passed and got["patched"].ab is None


def test_a_current_files_evidence_keeps_keys_that_older_files_used_and_bad_types_are_refused():
    import pytest

    from lab.errors import ConfigError

    c = CheckResult(name="x", variant="v", passed=True, expected="e", observed="o",
                    details={"title": "the case's own word", "subtests": 3}, number=4)
    assert CheckResult.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for key, bad in (("number", None), ("number", True), ("title", 3), ("timed_out", "no"),
                     ("cached_from", None), ("subtests", "a")):
        with pytest.raises(ConfigError, match=key):
            CheckResult.from_dict({**c.to_dict(), key: bad})
    with pytest.raises(ConfigError, match="skipped"):
        CheckResult.from_dict({**c.to_dict(), "ab": {"role": "head", "skipped": 2,
                                                     "own": {"passed": True, "observed": ""}}})


def test_the_junit_failure_says_when_a_verdict_came_from_the_cache_or_a_time_limit():
    import dataclasses
    import xml.etree.ElementTree as ET

    from lab.report.junit import render_junit
    from lab.results import RunResults

    failed = dataclasses.replace(check("patched", False, [sub("a")], kind=CheckKind.SCRIPT,
                                       name="script:x.sh"),
                                 timed_out=True, cached_from="run-7")
    root = ET.fromstring(render_junit(RunResults("r", "now", checks=(failed,))))
    text = next(c for s in root for c in s.findall("testcase")
                if c.get("name") == "script:x.sh").find("failure").text
    assert "stopped by its time limit" in text and "verdict cached from run run-7" in text
