"""Patches and mboxes, applied to a lab-owned git tree with git's rules.

A patch file is either a plain diff or an mbox of one or more mails (what
`git format-patch --stdout` and b4 write). An mbox is applied mail by mail,
in order, as `git am` would; a mail without a diff in front of the others is
the cover letter, kept for the report. Each piece goes through `git apply`,
which refuses paths outside the tree and writes through no symlink, and
handles renames, mode changes and binary patches. On top of that the lab
refuses a patch that leaves a symlink pointing out of the tree.

Fuzz: `git apply` needs every context line to match (it only moves a hunk
to another line). When that fails, the lab tries again with fewer context
lines (`-C2`, then `-C1`: what `patch` calls fuzz 1 and 2) and records that
in the build's record; `strict` refuses it instead.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.errors import ConfigError, PatchError
from lab.kernel import gittree

# git mailsplit's idea of an mbox separator: "From <id> <asctime date>".
_FROM_RE = re.compile(
    rb"^From \S+ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}$", re.MULTILINE)
# Where the commit message ends and the patch begins (git mailinfo's rule).
_DIFF_START_RE = re.compile(r"^(---\s*$|diff -|Index: )", re.MULTILINE)
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@(.*)$")
_SERIES_NUM_RE = re.compile(r"\b0+/\d+\]")
_FAIL_RE = re.compile(r"^error: patch failed: (.+):(\d+)$", re.MULTILINE)
FUZZ_LADDER: tuple[tuple[int, tuple[str, ...]], ...] = ((0, ()), (1, ("-C2",)), (2, ("-C1",)))


@dataclass(frozen=True)
class Piece:
    """One patch to apply: a plain diff file, or one mail of an mbox."""

    file: Path
    index: int  # 1-based position in its file
    total: int
    subject: str
    diff: str

    @property
    def name(self) -> str:
        where = f"{self.file}" + (f" [{self.index}/{self.total}]" if self.total > 1 else "")
        return f'{where} "{self.subject}"' if self.subject else where


@dataclass(frozen=True)
class CoverLetter:
    file: str
    subject: str
    body: str


@dataclass(frozen=True)
class Applied:
    """What the build record says about one applied piece."""

    file: str
    index: int
    subject: str
    fuzz: int  # 0: every context line matched
    notes: tuple[str, ...]  # git's "Hunk #N succeeded at L (offset K lines)."

    def to_dict(self) -> dict:
        return {**asdict(self), "notes": list(self.notes)}


def is_mbox(data: bytes) -> bool:
    return bool(_FROM_RE.match(data.split(b"\n", 1)[0]))


def _split_mbox(data: bytes) -> list[bytes]:
    starts = [m.start() for m in _FROM_RE.finditer(data)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


def _text_of(msg: email.message.Message) -> str:
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
    if part is None:
        return ""
    payload = part.get_payload(decode=True) or b""
    return payload.decode(part.get_content_charset() or "utf-8", errors="replace")


def read_pieces(path: Path) -> tuple[list[Piece], list[CoverLetter]]:
    """A version file as the pieces to apply, in order, and its cover letters."""
    data = path.read_bytes()
    if not is_mbox(data):
        return [Piece(path, 1, 1, "", data.decode(errors="replace"))], []
    mails = _split_mbox(data)
    pieces: list[Piece] = []
    covers: list[CoverLetter] = []
    for i, raw in enumerate(mails, 1):
        msg = email.message_from_bytes(raw.split(b"\n", 1)[1], policy=email.policy.default)
        subject = " ".join(str(msg.get("Subject", "")).split())
        text = _text_of(msg).replace("\r\n", "\n")
        cut = _DIFF_START_RE.search(text)
        diff = text[cut.start():] if cut else ""
        has_diff = bool(re.search(r"^@@ |^GIT binary patch|^(rename|copy) from |^old mode ",
                                  diff, re.MULTILINE))
        if not has_diff:
            if not pieces and (i == 1 or _SERIES_NUM_RE.search(subject)):
                covers.append(CoverLetter(str(path), subject, text.strip()))
                continue
            raise ConfigError(f'{path} [{i}/{len(mails)}] "{subject}": the mail holds no patch')
        pieces.append(Piece(path, i, len(mails), subject, diff))
    if not pieces:
        raise ConfigError(f"{path}: an mbox with no patch in it")
    return pieces, covers


def _hunk_name(piece: Piece, file: str, line: int) -> str:
    """`hunk #N (@@ ... @@ context)` for the hunk of `file` starting at `line`."""
    current, n = None, 0
    for text in piece.diff.splitlines():
        if text.startswith("+++ ") or text.startswith("--- "):
            name = text[4:].split("\t")[0].strip()
            if name != "/dev/null":
                current = name.split("/", 1)[1] if "/" in name else name
                n = 0
        elif (m := _HUNK_RE.match(text)) and current == file:
            n += 1
            if int(m.group(1)) == line:
                return f"hunk #{n} ({text.strip()})"
    return f"the hunk at line {line}"


def _explain(piece: Piece, output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith(("error:", "fatal:", "warning:"))]
    found = [f"{file}: {_hunk_name(piece, file, int(line))} does not apply"
             for file, line in _FAIL_RE.findall(output)]
    return "\n".join([*found, *lines]) or output.strip()[-2000:]


def _escaping_links(tree: Path, paths: Sequence[str]) -> list[str]:
    root = tree.resolve()
    bad = []
    for rel in paths:
        p = tree / rel
        if p.is_symlink():
            target = os.path.realpath(p)
            if not Path(target).is_relative_to(root):
                bad.append(f"{rel} -> {os.readlink(p)}")
    return bad


def apply_pieces(tree: Path, pieces: Sequence[Piece], log_path: Path, *, strict: bool = False,
                 scratch: Path) -> list[Applied]:
    """Apply `pieces` in order to the git working tree `tree` (not all-or-
    nothing here: the caller restores the tree with git on any error)."""
    applied = []
    for piece in pieces:
        scratch.mkdir(parents=True, exist_ok=True)
        patch_file = scratch / f"piece-{len(applied) + 1}.diff"
        patch_file.write_text(piece.diff)
        ladder = FUZZ_LADDER[:1] if strict else FUZZ_LADDER
        outputs = []
        for _fuzz, flags in ladder:
            res = gittree.git(tree, "apply", "--verbose", "--whitespace=nowarn", *flags,
                              patch_file, log_path=log_path, check=False, error=PatchError)
            outputs.append(res.stdout)
            if res.ok:
                break
        if not res.ok:
            hint = ""
            if strict:
                probe = gittree.git(tree, "apply", "--check", *FUZZ_LADDER[-1][1], patch_file,
                                    check=False, error=PatchError)
                hint = " (it would apply with fuzz; --strict refuses fuzz)" if probe.ok else ""
            raise PatchError(f"patch {piece.name} does not apply{hint}", log_path=log_path,
                             excerpt=_explain(piece, outputs[0]))
        notes = tuple(ln.strip() for ln in res.stdout.splitlines() if ln.startswith("Hunk #"))
        links = _escaping_links(tree, gittree.changed_paths(tree, log_path=log_path))
        if links:
            raise PatchError(f"patch {piece.name} makes a symlink that points outside the tree",
                             log_path=log_path, excerpt="\n".join(links))
        applied.append(Applied(str(piece.file), piece.index, piece.subject,
                               len(outputs) - 1, notes))
    return applied


def fuzz_summary(applied: Sequence[Applied]) -> list[str]:
    return [f'{a.file} [{a.index}] "{a.subject}": applied with fuzz {a.fuzz} '
            f"(git apply {' '.join(FUZZ_LADDER[a.fuzz][1])})" for a in applied if a.fuzz]
