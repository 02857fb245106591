"""KUnit suites, read from the console of the boot that ran them.

Built-in KUnit suites run while the kernel boots, before init, and print
KTAP on the console (lab.kernel.kunit chose the config and the filter glob).
The check reads the console of the variant's current boot up to the lab's
ready marker, takes the printk timestamps off, and parses the KTAP: one
sub-result per suite and per test case. A crash or hang while they run is
the boot's failure, classified as any boot's (lab.vm.machine); output with
no KTAP, or KTAP with no test, fails the check: a KUnit check that ran
nothing proves nothing. Judged A/B against the base (lab.suite.ab).
"""

from __future__ import annotations

import re

from lab.results import CheckKind
from lab.suite import ktap
from lab.suite.spec import Case, CaseContext, Observation
from lab.vm import console

FIRST_NUMBER = 301  # after the suite's cases, the user's scripts and kselftests
_STAMP = re.compile(r"^\[\s*\d+\.\d+\] ?")
_START = re.compile(r"^\s*(KTAP|TAP) version \d+\s*$")
TAIL_LINES = 30


def check_name(glob: str) -> str:
    return f"kunit:{glob}"


def ktap_of_boot(console_text: str) -> str:
    """The console from KUnit's first version line up to the ready marker,
    without printk's timestamps (indentation kept: it is KTAP's nesting)."""
    before_ready = console_text.split(console.READY_MARKER, 1)[0]
    lines = [_STAMP.sub("", line) for line in before_ready.splitlines()]
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    return "" if start is None else "\n".join(lines[start:]) + "\n"


def judge(glob: str, text: str) -> Observation:
    expected = f"KUnit suites matching {glob!r} ran at boot and every test passed"
    report = ktap.parse(text)
    leaves = [p for p, t in report.walk() if not t.subtests]
    details = {"glob": glob, "format": report.format, "parsed": report.parsed,
               "parse_note": report.note, "problems": list(report.problems),
               "ktap_tail": "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])}
    if not text:
        return Observation(False, expected, "no KUnit output on the console before the "
                           "guest was ready (is the suite built in?)", details)
    subtests = report.subtests()
    if not report.parsed or not leaves:
        return Observation(False, expected, f"KUnit ran no test: {report.summary()}", details,
                           subtests=subtests)
    return Observation(report.ok, expected, report.summary(), details, subtests=subtests)


def observe(ctx: CaseContext, glob: str) -> Observation:
    return judge(glob, ktap_of_boot(ctx.guest.machine.console_text()))


def cases(glob: str | None) -> list[Case]:
    if not glob:
        return []
    return [Case(FIRST_NUMBER, check_name(glob), f"KUnit suites {glob} at boot",
                 lambda ctx: observe(ctx, glob), alone=True, kind=CheckKind.KUNIT)]
