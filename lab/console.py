"""Pure parsing of a guest's serial console (and dmesg) for kernel trouble."""

from __future__ import annotations

import re
from dataclasses import dataclass

READY_MARKER = "KERNEL-LAB-READY"
FAILED_MARKER = "KERNEL-LAB-FAILED"

# Each pattern names a kind of report; order matters only for the label.
_TROUBLE = [
    # Specific reports first: several of them also start with "BUG:".
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("kasan", re.compile(r"\bKASAN: ")),
    ("soft-lockup", re.compile(r"watchdog: BUG: soft lockup")),
    ("might-sleep", re.compile(r"BUG: sleeping function called from invalid context")),
    ("oops", re.compile(r"\bOops: ")),
    ("bug", re.compile(r"\bBUG: ")),
    ("gpf", re.compile(r"general protection fault")),
    ("warning", re.compile(r"\bWARNING: (CPU|at)\b")),
    ("lockdep", re.compile(
        r"(possible circular locking dependency|possible recursive locking|"
        r"inconsistent lock state|lock held when returning to user space|"
        r"suspicious RCU usage|INFO: possible irq lock inversion)")),
    ("hung-task", re.compile(r"INFO: task .+ blocked for more than \d+ seconds")),
    ("rcu-stall", re.compile(r"rcu: INFO: rcu_\w+ (self-)?detected stalls")),
]

EXCERPT_BEFORE = 5
EXCERPT_AFTER = 40


@dataclass(frozen=True)
class Trouble:
    kind: str
    line: str  # the line that matched
    excerpt: str  # the report around it, as a developer wants to read it


def find_trouble(text: str) -> list[Trouble]:
    """Every kernel report in `text`, first line of each report only once."""
    lines = text.splitlines()
    found: list[Trouble] = []
    covered_until = -1
    for i, line in enumerate(lines):
        if i <= covered_until:
            continue
        for kind, pattern in _TROUBLE:
            if pattern.search(line):
                end = _report_end(lines, i)
                start = max(0, i - EXCERPT_BEFORE)
                found.append(Trouble(kind, line.strip(), "\n".join(lines[start:end])))
                covered_until = end - 1
                break
    return found


def _report_end(lines: list[str], start: int) -> int:
    """A report ends at its `---[ end trace` line, else after EXCERPT_AFTER lines."""
    limit = min(len(lines), start + EXCERPT_AFTER)
    for j in range(start, limit):
        if "---[ end " in lines[j]:
            return j + 1
    return limit


def is_ready(text: str) -> bool:
    return READY_MARKER in text


def init_failure(text: str) -> str | None:
    for line in text.splitlines():
        if FAILED_MARKER in line:
            return line.split(FAILED_MARKER, 1)[1].strip() or "lab-init failed"
    return None


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
