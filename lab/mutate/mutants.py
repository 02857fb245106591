"""Mutants of the C functions a patch changes: pure text work, no builds.

`lab mutate` asks whether the suite notices when the code under test is
wrong. A mutant is one small, deliberate mistake in a function the patch
changed, made by a fixed set of operators, in a fixed order:

- cond-drop / cond-negate: drop or negate one operand of a `||`/`&&` chain;
- relational: `>` <-> `>=`, `<` <-> `<=`;
- lock-swap: an exclusive lock or unlock call <-> its shared kind;
- drop-statement: remove one statement;
- flag-bit: a flag constant replaced by another bit of its family;
- bool-return: a function returning bool returns the opposite;
- arith-drop: drop one operand of a sum (`pos + count > size` -> `pos > size`);
- flag-source: a flag read from the kiocb read from the open file instead
  (`iocb->ki_flags & IOCB_APPEND` -> `iocb->ki_filp->f_flags & O_APPEND`);
- narrow-length: a length helper replaced by a narrower one (the whole
  iov_iter's count -> its first segment's);
- add-conjunct: a condition of an `if` gains `&& !(iocb->ki_flags & F)` for a
  caller's flag F the function can see (a routing decision that now also
  depends on how the caller asked).

Functions are found the way kernel style writes them (the name at column 0,
the body's braces at column 0), which is what a patch to the kernel has.
Every mutant has a stable key (a hash of the function, the operator and the
exact edit), so a person's judgement that one is equivalent sticks to it.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lab.errors import ConfigError
from lab.host import cache

OPERATORS = ("cond-drop", "cond-negate", "relational", "lock-swap", "drop-statement",
             "flag-bit", "bool-return", "arith-drop", "flag-source", "narrow-length",
             "add-conjunct")

# Exclusive <-> shared kinds of the locks a direct-write path takes.
LOCK_SWAPS = {
    "inode_lock": "inode_lock_shared", "inode_lock_shared": "inode_lock",
    "inode_unlock": "inode_unlock_shared", "inode_unlock_shared": "inode_unlock",
    "down_write": "down_read", "down_read": "down_write",
    "up_write": "up_read", "up_read": "up_write",
}
# Each constant is replaced by the next bit of its family (wrapping round).
FLAG_FAMILIES = (
    ("FOPEN_DIRECT_IO", "FOPEN_KEEP_CACHE", "FOPEN_NONSEEKABLE", "FOPEN_CACHE_DIR",
     "FOPEN_STREAM", "FOPEN_NOFLUSH", "FOPEN_PARALLEL_DIRECT_WRITES"),
    ("IOCB_APPEND", "IOCB_DIRECT", "IOCB_DSYNC", "IOCB_SYNC", "IOCB_NOWAIT"),
)
_NEXT_FLAG = {f: fam[(i + 1) % len(fam)] for fam in FLAG_FAMILIES for i, f in enumerate(fam)}

# The kiocb's flag and the open file's flag that asks for the same thing.
FLAG_SOURCES = {"IOCB_APPEND": "O_APPEND", "IOCB_DIRECT": "O_DIRECT", "IOCB_DSYNC": "O_DSYNC",
                "IOCB_SYNC": "__O_SYNC"}
_KIOCB_FLAG = re.compile(r"\b(\w+)->ki_flags(\s*&\s*)(IOCB_[A-Z]+)\b")
# Length helpers and a narrower one of the same signature.
NARROWER = {"iov_iter_count": "iov_iter_single_seg_count"}
CONJUNCT_FLAGS = ("IOCB_DIRECT", "IOCB_DSYNC", "IOCB_APPEND")
# A sum of two simple operands: names, member accesses and calls without nested parens.
_TERM = r"[A-Za-z_][\w]*(?:(?:->|\.)[A-Za-z_]\w*)*(?:\([^()]*\))?"
_SUM = re.compile(rf"({_TERM})\s*\+\s*({_TERM})")
_FUNC_HEAD = re.compile(r"^[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\(", re.M)
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
# Dropping a declaration only ever breaks the build: not a mutant worth building.
_DECLARATION = re.compile(r"(const\s+)?(struct\s+\w+|\w+_t|bool|int|long|unsigned|char)\b"
                          r"[\s\*]+\w+\s*(=|;|\[)")


@dataclass(frozen=True)
class Function:
    name: str
    start: int  # offset of the signature's first character
    body: int  # offset of the body's opening brace
    end: int  # offset just past the closing brace
    returns: str  # the return type's last word: bool, void, int, ...


@dataclass(frozen=True)
class Mutant:
    key: str  # stable: hash of function, operator and the exact edit
    operator: str
    function: str
    line: int  # 1-based line of the edit in the mutated file
    start: int
    end: int
    replacement: str
    original: str

    def apply(self, text: str) -> str:
        return text[:self.start] + self.replacement + text[self.end:]

    @property
    def summary(self) -> str:
        before = " ".join(self.original.split())
        after = " ".join(self.replacement.split()) or "(removed)"
        return f"{self.function}:{self.line} {self.operator}: {before} -> {after}"


def blank_comments_and_strings(text: str) -> str:
    """Same length, comments and literals turned to spaces: offsets stay valid
    and nothing inside them is mistaken for code."""
    out = list(text)
    pattern = re.compile(r"/\*.*?\*/|//[^\n]*|\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*'", re.S)
    for m in pattern.finditer(text):
        for i in range(m.start(), m.end()):
            if out[i] != "\n":
                out[i] = " "
    return "".join(out)


def functions(text: str) -> list[Function]:
    """Kernel-style function definitions: signature at column 0, `{` and `}` at column 0."""
    code = blank_comments_and_strings(text)
    found = []
    for m in _FUNC_HEAD.finditer(code):
        head_end = code.find("\n{", m.end())
        if head_end < 0:
            continue
        signature = code[m.start():head_end]
        if ";" in signature or "{" in signature or "}" in signature or "=" in signature:
            continue  # a prototype, a declaration, or the end of something else
        body = head_end + 1
        close = code.find("\n}", body)
        if close < 0:
            continue
        prefix = code[m.start():m.start(1)].replace("*", " ").split()
        found.append(Function(m.group(1), m.start(), body, close + 2,
                              prefix[-1] if prefix else "int"))
    return found


def changed_functions(before: str, after: str) -> list[Function]:
    """Functions of `after` that are new or whose text differs from `before`."""
    old = {f.name: before[f.start:f.end] for f in functions(before)}
    return [f for f in functions(after) if old.get(f.name) != after[f.start:f.end]]


def _matching(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _top_level_split(code: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """Operands of a `||`/`&&` chain in code[start:end] at paren depth 0:
    (operand start, operand end, the operator after it or '')."""
    parts, depth, i, begin = [], 0, start, start
    while i < end:
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and code[i:i + 2] in ("||", "&&"):
            parts.append((begin, i, code[i:i + 2]))
            begin = i + 2
            i += 2
            continue
        i += 1
    parts.append((begin, end, ""))
    return parts


def _expressions(code: str, fn: Function) -> Iterator[tuple[int, int]]:
    """Spans that hold a condition or a value: if/while conditions, the value
    of `return` and of an assignment or initializer."""
    for m in re.finditer(r"\b(if|while)\s*\(", code[fn.body:fn.end]):
        open_at = fn.body + m.end() - 1
        close = _matching(code, open_at)
        if close > 0:
            yield open_at + 1, close
    for m in re.finditer(r"(\breturn\b|[^=!<>+\-*/&|^%]=(?!=))", code[fn.body:fn.end]):
        start = fn.body + m.end()
        semi = code.find(";", start, fn.end)
        if semi > 0:
            yield start, semi


def _strip(code: str, start: int, end: int) -> tuple[int, int]:
    while start < end and code[start].isspace():
        start += 1
    while end > start and code[end - 1].isspace():
        end -= 1
    return start, end


def _edits(text: str, code: str, fn: Function) -> Iterator[tuple[str, int, int, str]]:
    """(operator, start, end, replacement) for one function, in a fixed order."""
    # Boolean chains.
    for start, end in _expressions(code, fn):
        parts = _top_level_split(code, start, end)
        if len(parts) < 2:
            continue
        for i, (a, b, _op) in enumerate(parts):
            s, e = _strip(code, a, b)
            if i + 1 < len(parts):  # drop the operand and the operator after it
                nxt = _strip(code, parts[i + 1][0], parts[i + 1][1])[0]
                yield "cond-drop", s, nxt, ""
            else:  # the last one: drop the operator before it too
                prev_end = _strip(code, parts[i - 1][0], parts[i - 1][1])[1]
                yield "cond-drop", prev_end, e, ""
            yield "cond-negate", s, e, f"!({text[s:e]})"
    body = code[fn.body:fn.end]
    # Relational operators (not ->, >>, <<, nor inside them).
    for m in re.finditer(r"(?<![-<>])(>=|<=|>|<)(?![<>=])", body):
        flip = {">": ">=", ">=": ">", "<": "<=", "<=": "<"}[m.group(1)]
        yield "relational", fn.body + m.start(), fn.body + m.end(), flip
    # Lock kinds and flag bits.
    for m in _IDENT.finditer(body):
        name = m.group(0)
        if name in LOCK_SWAPS and body[m.end():].lstrip().startswith("("):
            yield "lock-swap", fn.body + m.start(), fn.body + m.end(), LOCK_SWAPS[name]
    # Statements: from after `;`, `{` or `}` up to the next `;` at the same depth.
    depth, begin = 0, None
    for i in range(fn.body, fn.end):
        c = code[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c in "{};":
            if c == ";" and begin is not None:
                s, e = _strip(code, begin, i)
                droppable = s < e and not re.match(r"(for|if|while|else)\b", code[s:e]) \
                    and not _DECLARATION.match(code[s:i + 1]) \
                    and not (fn.returns != "void" and code[s:e].startswith("return"))
                if droppable:
                    # the whole line goes when the statement is alone on its lines
                    ls = text.rfind("\n", 0, s) + 1
                    le = text.find("\n", i)
                    if not text[ls:s].strip() and not text[i + 1:le].strip():
                        yield "drop-statement", ls, le + 1, ""
                    else:
                        yield "drop-statement", s, i + 1, ""
            begin = i + 1
        elif depth == 0 and begin is not None and c == "\n" and (
                re.match(r"\s*(if|while|for)\b", code[begin:i])
                and code[begin:i].rstrip().endswith(")")
                or code[begin:i].strip() == "else"):
            begin = i + 1  # an unbraced if's or else's own line: the statement follows
    for m in _IDENT.finditer(body):
        if m.group(0) in _NEXT_FLAG:
            yield "flag-bit", fn.body + m.start(), fn.body + m.end(), _NEXT_FLAG[m.group(0)]
    if fn.returns == "bool":
        for m in re.finditer(r"\breturn\b", body):
            start = fn.body + m.end()
            semi = code.find(";", start)
            s, e = _strip(code, start, semi)
            yield "bool-return", s, e, f"!({text[s:e]})"
    for m in _SUM.finditer(body):
        yield "arith-drop", fn.body + m.start(), fn.body + m.end(), m.group(2)
        yield "arith-drop", fn.body + m.start(), fn.body + m.end(), m.group(1)
    for m in _KIOCB_FLAG.finditer(body):
        if m.group(3) in FLAG_SOURCES:
            yield ("flag-source", fn.body + m.start(), fn.body + m.end(),
                   f"{m.group(1)}->ki_filp->f_flags{m.group(2)}{FLAG_SOURCES[m.group(3)]}")
    for m in _IDENT.finditer(body):
        if m.group(0) in NARROWER and body[m.end():].lstrip().startswith("("):
            yield "narrow-length", fn.body + m.start(), fn.body + m.end(), NARROWER[m.group(0)]
    kiocb = re.search(r"struct kiocb \*(\w+)", code[fn.start:fn.body])
    if kiocb:
        for m in re.finditer(r"\bif\s*\(", body):
            open_at = fn.body + m.end() - 1
            close = _matching(code, open_at)
            cond = text[open_at + 1:close]
            for flag in CONJUNCT_FLAGS:
                yield ("add-conjunct", open_at + 1, close,
                       f"({cond}) && !({kiocb.group(1)}->ki_flags & {flag})")


def mutants(text: str, targets: Sequence[Function]) -> list[Mutant]:
    """Every mutant of the target functions, in file order then operator order."""
    code = blank_comments_and_strings(text)
    out: dict[str, Mutant] = {}
    for fn in targets:
        for operator, start, end, replacement in _edits(text, code, fn):
            original = text[start:end]
            if original == replacement:
                continue
            key = cache.digest([fn.name, operator, text[fn.start:fn.end], str(start - fn.start),
                                original, replacement])[:12]
            line = text.count("\n", 0, start) + 1
            out.setdefault(key, Mutant(key, operator, fn.name, line, start, end, replacement,
                                       original))
    order = {op: i for i, op in enumerate(OPERATORS)}
    return sorted(out.values(), key=lambda m: (m.start, order[m.operator], m.end))


def choose(all_mutants: Sequence[Mutant], limit: int | None, seed: int | None) -> list[Mutant]:
    """The mutants to run: all, or `limit` of them (in order, or drawn with `seed`)."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--max must be at least 1, not {limit}")
    chosen = list(all_mutants)
    if seed is not None:
        random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit else chosen


def unified_diff(path: str, before: str, after: str) -> str:
    """A patch (`-p1`, a/ b/ prefixes) that turns `before` into `after`."""
    lines = difflib.unified_diff(before.splitlines(keepends=True),
                                 after.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}", n=3)
    return "".join(lines)
