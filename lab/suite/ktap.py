"""KTAP and TAP output as typed results (pure: text in, values out).

Understands KTAP 1/2 (the kernel's Documentation/dev-tools/ktap.rst), TAP 13
and 14, and versionless TAP 12 with a plan. Nesting is by indentation: a
KTAP subtest is an indented block with its own version line, a TAP 14
subtest an indented block after `# Subtest: NAME`; either way the block is
closed by the parent's own result line. TAP 13 YAML blocks (`---` .. `...`)
under a result are skipped. Lines that are none of these ("unknown lines")
are ignored, as both specifications allow.

Output counts as KTAP/TAP only if it has a version line, or a `1..N` plan
with result lines: a script that happens to print "ok" is not a TAP
producer. What is parsed but inconsistent (a plan that does not match, test
numbers out of order, a subtest without its result line, `Bail out!`) is
kept as `problems`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from lab.results import ALWAYS_FAILURES, NOT_FAILURES, SubResult, is_failure

# What each directive makes of a result is lab.results.is_failure's rule (the
# stored sub-results follow it too). Unknown words after `#` are diagnostics
# (the spec says to fall back to ok / not ok).
DIRECTIVES = (*NOT_FAILURES, *ALWAYS_FAILURES)

_VERSION = re.compile(r"^(KTAP|TAP) version (\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_RESULT = re.compile(r"^(not ok|ok|skip)(?=\s|$)\s*(\d+)?\s*(?:-\s+|-$)?(.*)$")
_DIRECTIVE = re.compile(r"^(skip|todo|xfail|timeout|error)(?:ped)?(?=[\s:]|$)[\s:]*(.*)$",
                        re.IGNORECASE)
_SUBTEST = re.compile(r"^#\s*Subtest:\s*(.*)$")
_BAIL = re.compile(r"^Bail out!\s*(.*)$")
MAX_DIAGNOSTICS = 20


@dataclass(frozen=True)
class TestResult:
    """One result line, with the subtests whose block it closes."""

    number: int | None
    name: str
    ok: bool  # the line's own verdict: `ok` or `not ok`
    directive: str = ""  # one of DIRECTIVES, or ""
    reason: str = ""  # the text after the directive (or after `#`)
    diagnostics: tuple[str, ...] = ()  # `#` lines just before the result
    subtests: tuple[TestResult, ...] = ()

    __test__ = False  # not a pytest class

    @property
    def failed(self) -> bool:
        return is_failure(self.ok, self.directive)


@dataclass(frozen=True)
class Report:
    parsed: bool
    format: str = ""  # "KTAP 1", "TAP 13", "TAP" (no version line), "" if not parsed
    plan: int | None = None
    tests: tuple[TestResult, ...] = ()
    problems: tuple[str, ...] = ()
    note: str = ""  # why the output was not parsed

    def walk(self) -> Iterator[tuple[str, TestResult]]:
        """Every test, depth first, parent before its subtests, with its path
        ("suite/case") as the name."""
        def visit(tests: Sequence[TestResult], prefix: str) -> Iterator[tuple[str, TestResult]]:
            for t in tests:
                yield prefix + t.name, t
                yield from visit(t.subtests, f"{prefix}{t.name}/")
        yield from visit(self.tests, "")

    def subtests(self) -> tuple[SubResult, ...]:
        """Every result flattened, named by its path: what a check stores."""
        return tuple(SubResult(path, t.ok, t.directive) for path, t in self.walk())

    def failures(self) -> list[str]:
        return [path for path, t in self.walk() if t.failed]

    @property
    def ok(self) -> bool:
        """Parsed, nothing failed, nothing inconsistent."""
        return self.parsed and not self.problems and not self.failures()

    def summary(self) -> str:
        """E.g. "KTAP 1: 4 ok, 1 skipped, 1 not ok (rw/verify)"."""
        if not self.parsed:
            return f"output not parsed as KTAP/TAP ({self.note})"
        leaves = [(p, t) for p, t in self.walk() if not t.subtests]
        skipped = sum(t.directive == "SKIP" for _, t in leaves)
        failed = [p for p, t in leaves if t.failed]
        # A parent that fails with passing children is still a failure to show.
        failed += [p for p, t in self.walk() if t.subtests and t.failed
                   and not any(q.startswith(p + "/") for q in failed)]
        passed = len(leaves) - skipped - sum(t.failed for _, t in leaves)
        parts = [f"{passed} ok"]
        if skipped:
            parts.append(f"{skipped} skipped")
        if failed:
            shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
            parts.append(f"{len(failed)} not ok ({shown})")
        text = f"{self.format}: " + ", ".join(parts)
        if self.problems:
            text += "; " + "; ".join(self.problems[:2])
        return text


@dataclass
class _Block:
    """What one indentation level holds while it is being read."""

    version: str = ""
    name: str = ""  # from `# Subtest:` inside the block (KTAP)
    plan: int | None = None
    plan_skip: bool = False
    tests: list[TestResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    bailed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.version or self.plan is not None or self.tests)


def _split_comment(text: str) -> tuple[str, str]:
    """Description and the text after the first unescaped '#'."""
    m = re.search(r"(?<!\\)#", text)
    if not m:
        return text.strip(), ""
    return text[:m.start()].strip(), text[m.end():].strip()


def _result(m: re.Match[str], diagnostics: list[str], children: _Block | None,
            pending_name: str) -> TestResult:
    word, number, rest = m.group(1), m.group(2), m.group(3)
    description, comment = _split_comment(rest)
    directive, reason = "", comment
    d = _DIRECTIVE.match(comment)
    if d:
        directive, reason = d.group(1).upper(), d.group(2).strip()
    if word == "skip":  # KTAP 2's result word
        directive = directive or "SKIP"
    name = description.replace("\\#", "#") or (children.name if children else "") \
        or pending_name or (f"test {number}" if number else "test")
    return TestResult(
        number=int(number) if number else None,
        name=name,
        ok=word != "not ok",
        directive=directive,
        reason=reason,
        diagnostics=tuple(diagnostics[-MAX_DIAGNOSTICS:]),
        subtests=tuple(children.tests) if children else (),
    )


def _parse_block(lines: Sequence[tuple[int, str]], base: int) -> _Block:
    block = _Block()
    children: _Block | None = None
    pending_name = ""  # TAP 14: `# Subtest: NAME` before the indented block
    diagnostics: list[str] = []
    after_result = False
    i = 0
    while i < len(lines):
        indent, text = lines[i]
        if indent > base:
            j = i
            while j < len(lines) and lines[j][0] > base:
                j += 1
            if after_result and text == "---":  # TAP 13 YAML: skip to its end
                end = next((k for k in range(i, j) if lines[k][1] == "..."), j - 1)
                i = end + 1
                after_result = False
                continue
            inner = _parse_block(lines[i:j], lines[i][0])
            if not inner.empty:
                if children is not None:
                    block.problems.append(f"subtest {children.name or '?'} has no result line")
                children = inner
            i = j
            continue
        i += 1
        after_result = False
        if m := _RESULT.match(text):
            test = _result(m, diagnostics, children, pending_name)
            expected = len(block.tests) + 1
            if test.number is not None and test.number != expected:
                block.problems.append(f"test {test.name}: number {test.number}, expected "
                                      f"{expected}")
            if children is not None:
                block.problems += [f"{test.name}/{p}" for p in children.problems]
            block.tests.append(test)
            children, pending_name, diagnostics, after_result = None, "", [], True
        elif m := _VERSION.match(text):
            if not block.version and not block.tests:
                block.version = f"{m.group(1)} {m.group(2)}"
        elif m := _PLAN.match(text):
            if block.plan is not None:
                block.problems.append(f"a second plan 1..{m.group(1)}")
            else:
                block.plan = int(m.group(1))
                block.plan_skip = bool(m.group(2) and m.group(2).upper().startswith("SKIP"))
        elif m := _SUBTEST.match(text):
            if block.version and not block.tests and block.plan is None and not block.name:
                block.name = m.group(1).strip()  # KTAP: inside the subtest's own block
            else:
                pending_name = m.group(1).strip()  # TAP 14: just before the block
        elif m := _BAIL.match(text):
            block.problems.append(f"Bail out! {m.group(1)}".rstrip())
            block.bailed = True
            break
        elif text.startswith("#"):
            diagnostics.append(text.lstrip("#").strip())
    if children is not None:
        # The producer stopped inside a subtest (killed, crashed): keep what it
        # reported, as a failure of the unfinished parent.
        name = children.name or pending_name or "unfinished subtest"
        block.problems.append(f"subtest {name} has no result line")
        block.tests.append(TestResult(None, name, False, subtests=tuple(children.tests)))
    if block.plan is not None and not block.bailed and block.plan != len(block.tests):
        block.problems.append(f"planned {block.plan} tests, ran {len(block.tests)}")
    return block


def _known(text: str) -> bool:
    return bool(text.startswith("#") or text in ("---", "...") or _RESULT.match(text)
                or _VERSION.match(text) or _PLAN.match(text) or _BAIL.match(text))


def _tokens(text: str) -> list[tuple[int, str]]:
    """(indentation, line) of the lines KTAP/TAP gives a meaning to. Unknown
    lines go here, not later: one at a lower indentation (a kernel message
    between KUnit's lines on a console) must not end a subtest's block."""
    out = []
    for raw in text.splitlines():
        line = raw.rstrip().expandtabs(8)
        if line.strip() and _known(line.strip()):
            out.append((len(line) - len(line.lstrip(" ")), line.strip()))
    return out


def parse(text: str) -> Report:
    """Parse a producer's stdout; never raises."""
    tokens = _tokens(text)
    top = _parse_block(tokens, 0)
    if not top.version and top.plan is None:
        looks = any(_RESULT.match(t) for _, t in tokens)
        note = ("result lines without a version line or plan" if looks
                else "no KTAP/TAP version line or plan")
        return Report(parsed=False, note=note)
    if not top.version and not top.tests and not top.plan_skip and top.plan != 0:
        return Report(parsed=False, note="a plan but no result lines and no version line")
    return Report(
        parsed=True,
        format=top.version or "TAP",
        plan=top.plan,
        tests=tuple(top.tests),
        problems=tuple(top.problems),
    )
