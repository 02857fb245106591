"""What a config option needs before `olddefconfig` keeps it on, read from Kconfig.

A test's option is often reachable only through others: LIST_KUNIT_TEST
`depends on KUNIT` and sits inside `if RUNTIME_TESTING_MENU`, which
tinyconfig turns off, so asking for it alone is silently undone. This
follows the plain dependencies (`depends on A && B`, enclosing `if A`
blocks, in this file and in the files that `source` it) so they can be asked
for too. Expressions with `||`, `!` or comparisons are left alone: there the
choice is the developer's, and the build's config check names what did not
stick.
"""

from __future__ import annotations

import re

from lab.kernel.tree_files import TreeFiles

MAX_DEPTH = 8
_SYMBOL = re.compile(r"^[A-Z0-9_]+$")
_ENTRY_END = re.compile(r"^(config|menuconfig|choice|endchoice|menu|endmenu|if|endif|source|"
                        r"comment|mainmenu)\b")


def _plain_symbols(expr: str) -> list[str]:
    """`A && (B && C)` -> [A, B, C]; anything else (||, !, =, m) -> []."""
    expr = expr.split("#", 1)[0].replace("(", " ").replace(")", " ")
    parts = [p.strip() for p in expr.split("&&")]
    if not parts or not all(_SYMBOL.match(p) for p in parts):
        return []
    return parts


def _enclosing_ifs(lines: list[str], upto: int) -> list[str]:
    # Only at the start of a line: an indented "if you ..." is help text.
    stack: list[list[str]] = []
    for line in lines[:upto]:
        if line.startswith("if "):
            stack.append(_plain_symbols(line[3:]))
        elif (line.rstrip() == "endif" or line.startswith(("endif ", "endif\t"))) and stack:
            stack.pop()
    return [s for group in stack for s in group]


def _entry_depends(lines: list[str], start: int) -> list[str]:
    found: list[str] = []
    for line in lines[start + 1:]:
        text = line.strip()
        if _ENTRY_END.match(text):
            break
        if text.startswith("depends on "):
            found += _plain_symbols(text[len("depends on "):])
    return found


def _sourced_in(tree: TreeFiles, rel: str, depth: int) -> list[str]:
    """The `if` symbols around each `source "rel"` (the file's own context)."""
    if depth > MAX_DEPTH:
        return []
    found: list[str] = []
    for parent, number in tree.grep(rf'^\s*source\s+"{re.escape(rel)}"', "*Kconfig*"):
        lines = (tree.read(parent) or "").splitlines()
        found += _enclosing_ifs(lines, number - 1) + _sourced_in(tree, parent, depth + 1)
    return found


def needs(tree: TreeFiles, symbol: str, depth: int = 0, seen: set[str] | None = None
          ) -> list[str]:
    """The symbols `symbol` plainly depends on, nearest first, transitively."""
    seen = set() if seen is None else seen
    if depth > MAX_DEPTH or symbol in seen:
        return []
    seen.add(symbol)
    direct: list[str] = []
    for rel, number in tree.grep(rf"^\s*(menu)?config\s+{symbol}\s*$", "*Kconfig*"):
        lines = (tree.read(rel) or "").splitlines()
        direct += _entry_depends(lines, number - 1) + _enclosing_ifs(lines, number - 1)
        direct += _sourced_in(tree, rel, 0)
    found: list[str] = []
    for dep in dict.fromkeys(direct):
        if dep != symbol and dep not in found:
            found.append(dep)
            found += [d for d in needs(tree, dep, depth + 1, seen) if d not in found]
    return found
