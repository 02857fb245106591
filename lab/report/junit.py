"""JUnit XML for CI systems: a testsuite per variant, a testcase per check.

Written with xml.etree (no dependency); control characters that XML 1.0
forbids, which consoles are full of, are replaced.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from lab.report.analysis import order
from lab.report.cells import value_text
from lab.report.document import ANSI
from lab.results import CheckResult, RunResults
from lab.suite import ab
from lab.verdict import RunsVerdict

# XML 1.0 forbids most control characters; consoles are full of them.
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _XML_BAD.sub("\ufffd", ANSI.sub("", text))


def render_junit(results: RunResults) -> str:
    """JUnit XML: a testsuite per variant, a testcase per check."""
    variants = order(
        [*results.variants, *(c.variant for c in results.checks)], ("baseline", "patched")
    )
    root = ET.Element("testsuites", name=_xml(f"kernel-lab {results.run_id}"))
    total = failed = 0
    total_time = 0.0
    for variant in variants:
        checks = [c for c in results.checks if c.variant == variant]
        time = sum(c.duration_s for c in checks)
        suite = ET.SubElement(root, "testsuite", name=_xml(variant), errors="0",
                              time=f"{time:.3f}", timestamp=_xml(results.created))
        info = results.variants.get(variant, {})
        if info:
            props = ET.SubElement(suite, "properties")
            for key, value in info.items():
                ET.SubElement(props, "property", name=_xml(key), value=_xml(value_text(value)))
        for c in checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(f"kernel-lab.{variant}"),
                name=_xml(c.name),
                time=f"{c.duration_s:.3f}",
            )
            if c.runs_verdict is RunsVerdict.NOT_RUN:
                ET.SubElement(case, "skipped", message=_xml(c.observed))
            elif not c.passed:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=_xml(f"expected {c.expected}; observed {c.observed}"),
                    type="ExpectationFailed",
                )
                failure.text = _xml(
                    f"expected: {c.expected}\nobserved: {c.observed}\n"
                    + (f"details: {json.dumps(c.details, sort_keys=True)}\n" if c.details else "")
                )
            if c.console_excerpt:
                ET.SubElement(case, "system-out").text = _xml(c.console_excerpt)
            _subtests(suite, c)
        cases = suite.findall("testcase")
        fails = sum(t.find("failure") is not None for t in cases)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(fails))
        suite.set("skipped", str(sum(t.find("skipped") is not None for t in cases)))
        total += len(cases)
        failed += fails
        total_time += time
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _subtests(suite: ET.Element, c: CheckResult) -> None:
    """One testcase per KTAP/TAP sub-test of a script, kselftest or KUnit check;
    judged A/B where the check was (lab.suite.ab): a regression fails, a failure
    the base shares is shown as skipped with why."""
    subtests = c.details.get("subtests") or []
    if not subtests:
        return
    failed = set(ab.failed_subtests(c.details))
    judged = c.details.get("ab") or {}
    regressions = set(judged.get("regressions", ()))
    for sub in subtests:
        name = sub["name"]
        case = ET.SubElement(suite, "testcase", classname=_xml(f"kernel-lab.{c.variant}.{c.name}"),
                             name=_xml(name), time="0")
        if name in failed:
            if judged.get("role") == "base":
                ET.SubElement(case, "skipped", message=_xml(
                    "fails on the base of the comparison (the reference, not under test)"))
            elif judged.get("role") == "head" and name not in regressions:
                ET.SubElement(case, "skipped", message=_xml(
                    f"fails on {judged.get('base')} too: not a regression"))
            else:
                ET.SubElement(case, "failure", type="SubtestFailed",
                              message=_xml(f"{c.name}: {name} not ok"))
        elif sub["directive"] == "SKIP":
            ET.SubElement(case, "skipped", message="SKIP")
