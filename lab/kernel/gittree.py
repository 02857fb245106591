"""Git repositories the lab owns: pristine kernel sources, provably so.

Every tree the lab builds from is a git repository of its own whose commit
is the source as it should be. Patches are applied to the working tree with
git's rules and taken out with git; `dirty()` is the proof that a tree is
pristine (nothing modified, added, removed, retyped, or left behind, ignored
files included). The lab never runs git in a user's repository except to
read it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.errors import BuildError, LabError
from lab.host import proc

GIT_TIMEOUT_S = 300
# Adding or checking out a whole kernel tree (~80k files, 1.5 GB) takes a
# minute or two on a slow disk.
TREE_TIMEOUT_S = 1800

# A user's global or system git config (hooks, signing, fsmonitor, filters)
# must not change what the lab commits or how it checks a tree.
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "kernel-lab",
    "GIT_AUTHOR_EMAIL": "lab@kernel-lab.invalid",
    "GIT_COMMITTER_NAME": "kernel-lab",
    "GIT_COMMITTER_EMAIL": "lab@kernel-lab.invalid",
    # A fixed date: the same files always give the same commit id.
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}
# No fsmonitor daemon, no untracked cache, no background gc; level-1 zlib
# makes the one big `git add` of a source tree about twice as fast.
_CONFIG = ("-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false",
           "-c", "gc.auto=0", "-c", "core.looseCompression=1", "-c", "core.quotePath=false",
           "-c", "advice.detachedHead=false", "-c", "core.symlinks=true",
           "-c", "core.fileMode=true",
           # The user's tree may belong to another uid (a CI container's
           # checkout): the lab only reads it, so git's ownership check must not
           # refuse it (only command-line config can lift it; global is ignored).
           "-c", "safe.directory=*")


def git(repo: Path, *args: str | os.PathLike, log_path: Path | None = None,
        timeout: float = GIT_TIMEOUT_S, check: bool = True, env: dict | None = None,
        error: type[LabError] = BuildError) -> proc.CommandResult:
    return proc.run(["git", "-C", repo, *_CONFIG, *args], timeout=timeout, log_path=log_path,
                    env={**_ENV, **(env or {})}, check=check, error=error,
                    what=f"git {args[0]}")


def query(repo: Path, *args: str, timeout: float = 120,
          stdin: Path | None = None) -> proc.CommandResult:
    """A short git query whose stdout is data (stderr kept apart), in the same
    sanitized environment; never raises for the exit status."""
    return proc.capture(["git", "-C", repo, *_CONFIG, *args], timeout=timeout, env=_ENV,
                        what=f"git {args[0]}", stdin=stdin)


def is_repo(path: Path) -> bool:
    """A git work tree's top; `.git` is a file in a `git worktree` or a submodule."""
    return (path / ".git").exists()


def commit_all(repo: Path, message: str, *, log_path: Path | None = None,
               init: bool = False) -> str:
    """Commit every file of `repo`'s working tree (ignored ones too); the id."""
    if init:
        git(repo, "init", "-q", log_path=log_path)
    # -f: Debian's tarball ships upstream's .gitignore, whose `.*` and
    # similar rules match files that are part of the source.
    git(repo, "add", "-A", "-f", ".", log_path=log_path, timeout=TREE_TIMEOUT_S)
    git(repo, "commit", "-q", "--allow-empty", "--no-verify", "-m", message,
        log_path=log_path, timeout=TREE_TIMEOUT_S)
    return head(repo)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def dirty(repo: Path, *, log_path: Path | None = None) -> list[str]:
    """Every path that differs from HEAD: modified, added, deleted, retyped,
    untracked or ignored. Empty means the tree is exactly its commit."""
    out = git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all",
              "--ignored=matching", "--no-renames", timeout=TREE_TIMEOUT_S).stdout
    paths = sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})
    if log_path is not None and paths:  # the NUL-separated output stays out of the log
        with log_path.open("a") as log:
            log.write("differs from the commit: " + " ".join(paths[:50]) + "\n")
    return paths


def restore(repo: Path, commit: str, *, log_path: Path | None = None) -> None:
    """Make the working tree exactly `commit`, whatever a patch or a crash
    left: git never writes through a symlink (it removes the link) and never
    touches a path outside the repository."""
    git(repo, "checkout", "-q", "-f", "--detach", commit, log_path=log_path,
        timeout=TREE_TIMEOUT_S)
    git(repo, "reset", "-q", "--hard", commit, log_path=log_path, timeout=TREE_TIMEOUT_S)
    git(repo, "clean", "-q", "-f", "-f", "-d", "-x", log_path=log_path, timeout=TREE_TIMEOUT_S)


def ensure_pristine(repo: Path, commit: str, *, log_path: Path | None = None) -> None:
    """Restore if needed, then prove it: HEAD is `commit` and nothing differs."""
    if head(repo) != commit or dirty(repo, log_path=log_path):
        restore(repo, commit, log_path=log_path)
    left = dirty(repo, log_path=log_path)
    if head(repo) != commit or left:
        raise BuildError(f"{repo}: cannot restore the source to {commit[:12]}",
                         excerpt="\n".join(left[:40]), log_path=log_path)


def changed_paths(repo: Path, *, log_path: Path | None = None) -> list[str]:
    """What differs from HEAD (after patches): the files a build must redo."""
    return dirty(repo, log_path=log_path)


def rev_commit(repo: Path, rev: str, *, what: str, error: type[LabError]) -> str:
    """`rev` as a full commit id, or `error` naming it (`what` says whose)."""
    res = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
              check=False, error=error)
    if not res.ok:
        raise error(f"{what} {rev!r}: no such commit in {repo}")
    return res.stdout.strip()


def related(repo: Path, a: str, b: str) -> bool:
    """Whether two commits share history (one may be an ancestor of the other)."""
    res = git(repo, "merge-base", a, b, check=False)
    return res.ok and bool(res.stdout.strip())


def has_objects(repo: Path, commits: Sequence[str]) -> bool:
    return all(git(repo, "cat-file", "-e", f"{c}^{{commit}}", check=False).ok for c in commits)
