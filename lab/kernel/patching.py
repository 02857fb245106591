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

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from lab.errors import ConfigError, PatchError
from lab.kernel import gittree

log = logging.getLogger(__name__)

# git mailsplit's idea of an mbox separator: "From <id> <asctime date>".
_FROM_RE = re.compile(
    rb"^From \S+ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}$", re.MULTILINE)
# Where the commit message ends and the patch begins (git mailinfo's rule).
_DIFF_START_RE = re.compile(r"^(---\s*$|diff -|Index: )", re.MULTILINE)
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@(.*)$")
_SERIES_NUM_RE = re.compile(r"\b0+/\d+\]")
_FAIL_RE = re.compile(r"^error: patch failed: (.+):(\d+)$", re.MULTILINE)
# The lines of a diff that name a path of the tree (git apply -p1's rules).
_PATH_LINE_RE = re.compile(r"^(?:diff --git (?P<old>\S+) (?P<new>\S+)"
                           r"|(?:---|\+\+\+) (?P<side>[^\t\n]+)(?:\t[^\n]*)?"
                           r"|(?:rename|copy) from (?P<src>[^\n]+))$", re.MULTILINE)
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


# "[PATCH v2 3/7]", "[RFC PATCH 0/2]": a mail's place in its series.
_NUMBERED_RE = re.compile(r"\[[^\]]*?\b(\d+)/(\d+)\]")
_REPLY_RE = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Mail:
    """One mail of an mbox as git mailinfo reads it (encodings, scissors, mboxrd)."""

    index: int
    subject: str  # as sent, "[PATCH n/m]" and all
    message: str
    patch: str

    @property
    def number(self) -> int | None:
        m = _NUMBERED_RE.search(self.subject)
        return int(m.group(1)) if m else None

    @property
    def is_reply(self) -> bool:
        return bool(_REPLY_RE.match(self.subject))


def read_mails(path: Path) -> list[Mail]:
    """Split an mbox with git mailsplit (mboxrd unquoting) and read each mail
    with git mailinfo (headers decoded, body re-encoded to UTF-8, a scissors
    line cuts what comes above it)."""
    with tempfile.TemporaryDirectory(prefix="lab-mbox-") as tmp:
        work = Path(tmp)
        split = gittree.query(work, "mailsplit", "--mboxrd", f"-o{work}", str(path.resolve()))
        if split.exit_status != 0:
            raise ConfigError(f"{path}: git mailsplit cannot read it: "
                              f"{(split.stderr.strip().splitlines() or ['?'])[-1]}")
        mails = []
        for i, raw in enumerate(sorted(work.glob("[0-9]*")), 1):
            msg, patch = work / f"m{raw.name}", work / f"p{raw.name}"
            info = gittree.query(work, "mailinfo", "-k", "--scissors", str(msg), str(patch),
                                 stdin=raw)
            if info.exit_status != 0:
                raise ConfigError(f"{path} [{i}]: git mailinfo cannot read the mail: "
                                  f"{(info.stderr.strip().splitlines() or ['?'])[-1]}")
            headers = dict(line.split(": ", 1) for line in info.stdout.splitlines()
                           if ": " in line)
            mails.append(Mail(i, " ".join(headers.get("Subject", "").split()),
                              msg.read_text(errors="replace"),
                              patch.read_text(errors="replace")))
        return mails


def _has_diff(text: str) -> bool:
    return bool(re.search(r"^@@ |^GIT binary patch|^(rename|copy) from |^old mode ", text,
                          re.MULTILINE))


@dataclass(frozen=True)
class MboxContents:
    pieces: list[Piece]
    covers: list[CoverLetter]
    skipped: list[str]  # replies and mails without a patch, by subject


def read_mbox(path: Path) -> MboxContents:
    """The patches of an mbox in series order, its cover letter, and what was
    skipped: a thread (b4 am, a mailing list archive) holds review replies."""
    mails = read_mails(path)
    total = len(mails)
    patches: list[Mail] = []
    covers: list[CoverLetter] = []
    skipped: list[str] = []
    for mail in mails:
        if mail.is_reply:
            skipped.append(f"[{mail.index}/{total}] {mail.subject} (a reply)")
        elif _has_diff(mail.patch):
            patches.append(mail)
        elif mail.number == 0 or (not patches and not covers and mail.index == 1):
            covers.append(CoverLetter(str(path), mail.subject, mail.message.strip()))
        elif mail.number is not None:  # patch n of the series, yet no diff: never skip it
            raise ConfigError(f'{path} [{mail.index}/{total}] "{mail.subject}": '
                              "the mail holds no patch")
        else:
            skipped.append(f"[{mail.index}/{total}] {mail.subject} (no patch in it)")
    if not patches:
        raise ConfigError(f"{path}: an mbox with no patch in it"
                          + (f" (skipped: {'; '.join(skipped)})" if skipped else ""))
    if all(m.number is not None for m in patches):
        numbers = [m.number for m in patches]
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{path}: two mails are patch {max(numbers, key=numbers.count)} "
                              "of the series (two versions in one mbox?)")
        patches.sort(key=lambda m: m.number or 0)
        of = {int(x.group(2)) for m in patches if (x := _NUMBERED_RE.search(m.subject))}
        missing = sorted(set(range(1, max(of) + 1)) - set(numbers)) if len(of) == 1 else []
        if missing:
            raise ConfigError(f"{path}: patch {', '.join(map(str, missing))} of {max(of)} is "
                              "not in the mbox")
    pieces = [Piece(path, m.index, total, m.subject, m.patch) for m in patches]
    return MboxContents(pieces, covers, skipped)


def read_pieces(path: Path) -> tuple[list[Piece], list[CoverLetter]]:
    """A version file as the pieces to apply, in order, and its cover letters."""
    data = path.read_bytes()
    if not is_mbox(data):
        return [Piece(path, 1, 1, "", data.decode(errors="replace"))], []
    contents = read_mbox(path)
    for line in contents.skipped:
        log.warning("%s: skipped %s", path, line)
    return contents.pieces, contents.covers


def diff_paths(text: str) -> list[str]:
    """The tree paths a diff (or an mbox) names, old and new sides, renames
    and copies, each once and in order: what a scratch copy of a tree must
    hold for the diff to apply there. A path that is absolute or climbs out
    of the tree is left out (git apply refuses such a patch anyway)."""
    found: list[str] = []
    for m in _PATH_LINE_RE.finditer(text):
        if m.group("src"):  # "rename from" / "copy from" name the path as it is
            names = [m.group("src").strip()]
        else:  # the others carry a prefix (a/, b/) that -p1 strips
            names = [n.strip().split("/", 1)[1] for n in m.group("old", "new", "side")
                     if n and n.strip() != "/dev/null" and "/" in n.strip()]
        for name in names:
            rel = PurePosixPath(name)
            if name and not rel.is_absolute() and ".." not in rel.parts and name not in found:
                found.append(name)
    return found


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
