"""A source's files as of one commit, read through git.

The lab's private clone of a tree holds several sources (an A/B's base and
head are two commits of one clone) and has whichever one the last build
left checked out, or none at all (a fresh `clone --no-checkout`). What a
variant's kselftest targets and KUnit suites need is therefore read from the
variant's own commit, never from the files on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.kernel import gittree


@dataclass(frozen=True)
class TreeFiles:
    repo: Path
    commit: str

    def read(self, rel: str) -> str | None:
        """The file's text, or None if it is not in the commit."""
        out = gittree.query(self.repo, "show", f"{self.commit}:{rel}", timeout=120)
        return out.stdout if out.exit_status == 0 else None

    def is_file(self, rel: str) -> bool:
        out = gittree.query(self.repo, "cat-file", "-t", f"{self.commit}:{rel}", timeout=60)
        return out.exit_status == 0 and out.stdout.strip() == "blob"

    def names(self, folder: str) -> list[str]:
        """The entries of a folder (files and folders), by name."""
        out = gittree.query(self.repo, "ls-tree", "--name-only", f"{self.commit}:{folder}",
                            timeout=60)
        return out.stdout.split("\n")[:-1] if out.exit_status == 0 else []

    def grep(self, pattern: str, *paths: str, files_only: bool = False
             ) -> list[tuple[str, int]]:
        """(path, line number) of each line matching the extended regex (with
        files_only: (path, 0) per file), in the commit's files matching `paths`."""
        flags = ["-l"] if files_only else ["-n"]
        out = gittree.query(self.repo, "grep", *flags, "-E", pattern, self.commit, "--", *paths,
                            timeout=300)
        found = []
        prefix = f"{self.commit}:"
        for line in out.stdout.splitlines():
            line = line.removeprefix(prefix)
            if files_only:
                found.append((line, 0))
            else:
                rel, number, _ = line.split(":", 2)
                found.append((rel, int(number)))
        return found
