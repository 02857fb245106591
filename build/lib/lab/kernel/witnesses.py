"""Witnesses: small kernel patches on which a suite case must fail.

A series folder keeps them in `witnesses/NAME.patch`, each applied on top of
the series' newest version. A witness names its case in a `Case: NAME` line
of its message and says what it breaks in its subject; `lab calibrate` builds
each one and shows that its case fails on it every time while the correct
kernel passes, so a case that loses its power (a server or probe change that
makes it vacuous, a verdict that depends on a race) is noticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError

FOLDER = "witnesses"
_CASE = re.compile(r"^Case:\s*(\S+)\s*$", re.M)
_SUBJECT = re.compile(r"^Subject:\s*(?:\[[^\]]*\]\s*)?(.+(?:\n[ \t].+)*)", re.M)


@dataclass(frozen=True)
class Witness:
    name: str  # the file's stem
    case: str  # the suite case that must fail on it
    breaks: str  # one line: what the patch gets wrong
    patch: Path


def parse(path: Path) -> Witness:
    text = path.read_text(errors="replace")
    case = _CASE.search(text)
    if case is None:
        raise ConfigError(f"{path}: a witness names its case in a 'Case: NAME' line")
    subject = _SUBJECT.search(text)
    breaks = " ".join(subject.group(1).split()) if subject else ""
    breaks = re.sub(r"^witness for case \S+:\s*", "", breaks)
    return Witness(path.stem, case.group(1), breaks, path)


def load(series_folder: Path) -> list[Witness]:
    """The series' witnesses, by file name; none when it has no folder."""
    folder = series_folder / FOLDER
    if not folder.is_dir():
        return []
    return [parse(p) for p in sorted(folder.glob("*.patch"))]
