"""Pure parsing of a guest's serial console (and dmesg) for kernel trouble.

Every kind of report our test kernels print is named here once, with whether
the kernel can still be trusted to go on after it (`fatal`): a panic or an
oops kills the task or the machine, a WARNING or a lockdep splat does not.
The patterns follow the kernel's own wording on 6.1 and 6.12 (6.12 prefixes
exception reports with `Oops: `; 6.1 does not), and are tested against
console logs captured from our own kernels (tests/data/console/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

READY_MARKER = "KERNEL-LAB-READY"
FAILED_MARKER = "KERNEL-LAB-FAILED"


@dataclass(frozen=True)
class Kind:
    name: str
    pattern: re.Pattern[str]
    fatal: bool


def _k(name: str, regex: str, fatal: bool = False) -> Kind:
    return Kind(name, re.compile(regex), fatal)


# First match wins, so the specific reports come before the generic lines
# they also contain ("BUG: KASAN: ..." is KASAN, not a plain BUG).
KINDS: tuple[Kind, ...] = (
    _k("panic", r"Kernel panic - not syncing", fatal=True),
    _k("kasan", r"\bBUG: KASAN: "),
    _k("kfence", r"\bBUG: KFENCE: "),
    _k("ubsan", r"\bUBSAN: [\w-]+ in "),
    _k("soft-lockup", r"watchdog: BUG: soft lockup"),
    _k("hard-lockup", r"[Ww]atchdog detected hard LOCKUP"),
    _k("might-sleep", r"BUG: sleeping function called from invalid context"),
    _k("scheduling-while-atomic", r"BUG: scheduling while atomic"),
    _k("bug-at", r"\bkernel BUG at \S+", fatal=True),
    _k("double-fault", r"\b(PANIC: )?double fault", fatal=True),
    _k("invalid-opcode", r"\binvalid opcode: [0-9a-f]{4}", fatal=True),
    _k("divide-error", r"\bdivide error: [0-9a-f]{4}", fatal=True),
    _k("stack-segment", r"\bstack segment: [0-9a-f]{4}", fatal=True),
    _k("gpf", r"\bgeneral protection fault\b", fatal=True),
    _k("page-fault", r"\bBUG: (unable to handle page fault|kernel NULL pointer dereference)",
       fatal=True),
    _k("oops", r"\bOops: ", fatal=True),
    _k("list-corruption", r"\blist_(add|del) corruption\b"),
    _k("refcount", r"\brefcount_t: \w+"),
    _k("lockdep", r"(possible circular locking dependency|possible recursive locking|"
       r"inconsistent lock state|lock held when returning to user space|"
       r"suspicious RCU usage|possible irq lock inversion|bad unlock balance detected)"),
    _k("rwsem", r"\bDEBUG_RWSEMS_WARN_ON\("),
    _k("bug", r"\bBUG: "),
    _k("warning", r"\bWARNING: (CPU|at)\b"),
    _k("hung-task", r"INFO: task .+ blocked for more than \d+ seconds"),
    _k("rcu-stall", r"rcu: INFO: rcu_\w+ (self-)?detected stalls?"),
)

# Any exception report the kernel's die() prints ends its first line with
# the error code and the oops counter, "...: 0000 [#1] ...": a catch-all for
# exception kinds not named above.
_DIE_LINE = re.compile(r": [0-9a-f]{4} \[#\d+\]")
_REGISTER_LINE = re.compile(r"R[A-Z0-9]{1,2}: ")
FATAL_KINDS = frozenset(k.name for k in KINDS if k.fatal)
# Reports that say work stopped making progress: the case is over at once.
HANG_KINDS = frozenset({"hung-task", "soft-lockup", "hard-lockup", "rcu-stall"})

EXCERPT_BEFORE = 5
EXCERPT_AFTER = 40


@dataclass(frozen=True)
class Trouble:
    kind: str
    line: str  # the line that matched
    excerpt: str  # the report around it, as a developer wants to read it

    @property
    def fatal(self) -> bool:
        """After this report the kernel cannot be trusted to go on."""
        return self.kind in FATAL_KINDS or bool(_DIE_LINE.search(self.excerpt)) \
            or "Kernel panic" in self.excerpt


def _kind_of(line: str) -> str | None:
    for kind in KINDS:
        if kind.pattern.search(line):
            return kind.name
    if _DIE_LINE.search(line):
        return "oops"
    return None


def find_trouble(text: str) -> list[Trouble]:
    """Every kernel report in `text`, first line of each report only once."""
    lines = text.splitlines()
    found: list[Trouble] = []
    covered_until = -1
    for i, line in enumerate(lines):
        if i <= covered_until:
            continue
        kind = _kind_of(line)
        if kind is None:
            continue
        end = _report_end(lines, i)
        start = max(0, i - EXCERPT_BEFORE)
        found.append(Trouble(kind, line.strip(), "\n".join(lines[start:end])))
        covered_until = end - 1
    return found


def _report_end(lines: list[str], start: int) -> int:
    """A report ends at its `---[ end trace` line, else after EXCERPT_AFTER lines."""
    limit = min(len(lines), start + EXCERPT_AFTER)
    for j in range(start, limit):
        if "---[ end " in lines[j]:
            return j + 1
    return limit


def blocked_tasks(text: str) -> list[str]:
    """The stacks of blocked tasks that `echo w > /proc/sysrq-trigger` printed:
    one entry per task in D state (its `task:` line and the call trace)."""
    out: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        body = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
        if body.startswith("task:"):
            if current:
                out.append("\n".join(current))
            current = [line]
        elif current and (body.startswith((" ", "\t", "Call Trace", "<TASK>", "</TASK>"))
                          or _REGISTER_LINE.match(body)):
            current.append(line)
        elif current:
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def blocked_task_names(report: str) -> list[str]:
    """Task names in a sysrq-w report (`task:NAME state:D ...`), first seen first."""
    return list(dict.fromkeys(re.findall(r"task:(\S+)\s+state:D", report)))


def is_ready(text: str) -> bool:
    return READY_MARKER in text


def init_failure(text: str) -> str | None:
    for line in text.splitlines():
        if FAILED_MARKER in line:
            return line.split(FAILED_MARKER, 1)[1].strip() or "lab-init failed"
    return None


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
