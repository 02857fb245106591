"""JUnit XML for CI systems: a run's (a testsuite per variant, a testcase per
check) and any job's that has cases (lab mutate's kill matrix), one writer.

Written with xml.etree (no dependency); control characters that XML 1.0
forbids, which consoles are full of, are replaced.
"""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from lab.report.analysis import order
from lab.report.cells import value_text
from lab.report.document import ANSI
from lab.results import AbRole, CheckResult, RunResults
from lab.verdict import RunsVerdict

# XML 1.0 forbids most control characters; consoles are full of them.
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _XML_BAD.sub("\ufffd", ANSI.sub("", text))


@dataclass(frozen=True)
class Case:
    """One testcase. `failure` (its message) marks a failed case, `skipped`
    (its message) a skipped one; every text is cleaned when written."""

    classname: str
    name: str
    time_s: float
    failure: str | None = None
    failure_type: str = ""
    failure_text: str = ""
    skipped: str | None = None
    system_out: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    timestamp: str | None = None
    properties: tuple[tuple[str, str], ...] = ()


def render(name: str, suites: Sequence[Suite]) -> str:
    """JUnit XML: <testsuites> holding `suites`, with the counts and times summed."""
    root = ET.Element("testsuites", name=_xml(name))
    total = failed = 0
    total_time = 0.0
    for s in suites:
        fails = sum(c.failure is not None for c in s.cases)
        skips = sum(c.skipped is not None for c in s.cases)
        time = sum(c.time_s for c in s.cases)
        suite = ET.SubElement(root, "testsuite", name=_xml(s.name), tests=str(len(s.cases)),
                              failures=str(fails), errors="0", skipped=str(skips),
                              time=f"{time:.3f}")
        if s.timestamp is not None:
            suite.set("timestamp", _xml(s.timestamp))
        if s.properties:
            props = ET.SubElement(suite, "properties")
            for key, value in s.properties:
                ET.SubElement(props, "property", name=_xml(key), value=_xml(value))
        for c in s.cases:
            case = ET.SubElement(suite, "testcase", classname=_xml(c.classname),
                                 name=_xml(c.name), time=f"{c.time_s:.3f}")
            if c.failure is not None:
                failure = ET.SubElement(case, "failure", message=_xml(c.failure))
                if c.failure_type:
                    failure.set("type", c.failure_type)
                failure.text = _xml(c.failure_text)
            if c.skipped is not None:
                ET.SubElement(case, "skipped", message=_xml(c.skipped))
            if c.system_out:
                ET.SubElement(case, "system-out").text = _xml(c.system_out)
        total += len(s.cases)
        failed += fails
        total_time += time
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _check_case(c: CheckResult) -> Case:
    if c.runs_verdict is RunsVerdict.NOT_RUN:  # recorded, not run: skipped, saying why
        return Case(f"kernel-lab.{c.variant}", c.name, c.duration_s, skipped=c.observed,
                    system_out=c.console_excerpt)
    failure = None if c.passed else f"expected {c.expected}; observed {c.observed}"
    text = (f"expected: {c.expected}\nobserved: {c.observed}\n"
            + ("stopped by its time limit\n" if c.timed_out else "")
            + (f"verdict cached from run {c.cached_from}\n" if c.cached_from else "")
            + (f"details: {json.dumps(c.details, sort_keys=True)}\n" if c.details else ""))
    return Case(f"kernel-lab.{c.variant}", c.name, c.duration_s, failure=failure,
                failure_type="ExpectationFailed" if failure is not None else "",
                failure_text=text if failure is not None else "",
                system_out=c.console_excerpt)


def _subtest_cases(c: CheckResult) -> list[Case]:
    """One testcase per KTAP/TAP sub-test of a script, kselftest or KUnit check;
    judged A/B where the check was (lab.suite.ab): a regression fails, a failure
    the base shares is shown as skipped with why."""
    role = c.ab.role if c.ab is not None else None
    cases = []
    for sub in c.subtests:
        name = sub.name
        case = Case(f"kernel-lab.{c.variant}.{c.name}", name, 0.0)
        if sub.failed:
            if role is AbRole.BASE:
                case = dataclasses.replace(case, skipped=(
                    "fails on the base of the comparison (the reference, not under test)"))
            elif role is AbRole.HEAD and name not in c.ab.regressions:
                case = dataclasses.replace(
                    case, skipped=f"fails on {c.ab.base} too: not a regression")
            else:
                case = dataclasses.replace(case, failure=f"{c.name}: {name} not ok",
                                           failure_type="SubtestFailed")
        elif sub.skipped:
            case = dataclasses.replace(case, skipped="SKIP")
        cases.append(case)
    return cases


def render_junit(results: RunResults) -> str:
    """JUnit XML: a testsuite per variant, a testcase per check and per sub-test."""
    variants = order(
        [*results.variants, *(c.variant for c in results.checks)], ("baseline", "patched")
    )
    suites = [Suite(variant,
                    tuple(case for c in results.checks if c.variant == variant
                          for case in (_check_case(c), *_subtest_cases(c))),
                    timestamp=results.created,
                    properties=tuple((key, value_text(value)) for key, value
                                     in results.variants.get(variant, {}).items()))
              for variant in variants]
    return render(f"kernel-lab {results.run_id}", suites)
