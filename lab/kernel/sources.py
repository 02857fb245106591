"""Kernel sources as data: which tree a series (or a user) builds from.

A series names its source in series.toml (`source = "debian:PACKAGE"` or
`source = { git = "PATH", ref = "REV" }`); nothing in the code names a kernel
version. Every source ends up as a git repository the lab owns, in the cache,
plus the commit that is the source: Debian's tarball is unpacked once and
committed; a git tree is cloned privately (sharing the user's objects, never
writing to their repository); a working tree, uncommitted changes included,
becomes a commit in that private clone. `lab.kernel.build` checks the commit
out, proves the tree clean, applies patches and restores it, all under the
source's lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BuildError, ConfigError, SourceMissing
from lab.host import cache, proc
from lab.kernel import gittree

COMMIT_FILE = "lab-source-commit"  # inside .git: the commit that is the source
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_TARBALL_RE = re.compile(r"^/usr/src/[^/]+\.tar\.(xz|gz|bz2|zst)$")


@dataclass(frozen=True)
class KernelSource:
    """A git repository the lab owns and the commit in it that is this source.

    `key` names the content (it goes into every build key). Sources that
    share one repository (the revisions of one tree) share its `group`: one
    lock, one set of build folders, so going from one to the next is an
    incremental build.
    """

    key: str
    path: Path
    description: str
    group: str = ""
    commit: str = ""

    @property
    def build_group(self) -> str:
        return self.group or self.key


@dataclass(frozen=True)
class SourceSpec:
    """What series.toml's `source` says: a Debian package or a git tree + ref."""

    kind: str  # "debian" | "git"
    name: str  # the package, or the repository's path
    ref: str = ""

    def describe(self) -> str:
        return f"debian:{self.name}" if self.kind == "debian" else f"git {self.name} at {self.ref}"


def parse_spec(value: object, where: str, base: Path) -> SourceSpec:
    """series.toml's `source` value; relative git paths are relative to `base`."""
    if isinstance(value, str):
        kind, _, name = value.partition(":")
        if kind == "debian" and _PACKAGE_RE.fullmatch(name):
            return SourceSpec("debian", name)
        raise ConfigError(f"{where}: `source` = {value!r}: expected \"debian:PACKAGE\" "
                          "(e.g. a linux-source package) or { git = PATH, ref = REV }")
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"git", "ref"})
        repo, ref = value.get("git"), value.get("ref")
        if unknown or not isinstance(repo, str) or not repo or not isinstance(ref, str) or not ref:
            raise ConfigError(f"{where}: `source` table needs exactly `git` (a path) and "
                              f"`ref` (a revision), both non-empty strings")
        return SourceSpec("git", str((base / repo).expanduser().resolve()), ref)
    raise ConfigError(f"{where}: `source` must be a string or a table")


def resolve(spec: SourceSpec, cache_root: Path, log_dir: Path) -> KernelSource:
    if spec.kind == "debian":
        return debian_source(spec.name, cache_root, log_dir)
    return git_source(Path(spec.name), spec.ref, cache_root, log_dir, what="source ref")


def check_available(spec: SourceSpec) -> None:
    """Raise ConfigError (exit 2) saying what to install or fix; cheap."""
    if spec.kind == "debian":
        _debian_tarball(spec.name)
    elif not gittree.is_repo(Path(spec.name)) and not Path(spec.name, "HEAD").is_file():
        raise ConfigError(f"source {spec.describe()}: {spec.name} is not a git repository")


# --- Debian's linux-source packages ----------------------------------------------


def _dpkg(*args: str) -> proc.CommandResult:
    return proc.run(["dpkg-query", *args], timeout=60, check=False)


def debian_version(package: str) -> str:
    """The installed version of a Debian source package, or SourceMissing
    naming the command that installs it."""
    status = _dpkg("-W", "-f", "${db:Status-Status} ${Version}", package)
    state, _, version = status.stdout.strip().partition(" ")
    if status.exit_status != 0 or state != "installed" or not version:
        fix = f"sudo apt-get install {package}"
        raise SourceMissing(f"kernel source debian:{package} is not installed: "
                            f"install it with `{fix}`", fix=fix)
    return version


def _debian_tarball(package: str) -> tuple[Path, str]:
    """The package's source tarball and version, or a ConfigError saying
    which package to install."""
    version = debian_version(package)
    files = _dpkg("-L", package).stdout.split()
    tarballs = [Path(f) for f in files if _TARBALL_RE.match(f)]
    if len(tarballs) != 1 or not tarballs[0].is_file():
        raise ConfigError(f"debian:{package} is installed but has no single source tarball "
                          f"under /usr/src (found {[str(t) for t in tarballs]}): reinstall it")
    return tarballs[0], version


def debian_source(package: str, cache_root: Path, log_dir: Path) -> KernelSource:
    """The package's tarball, unpacked and committed into the cache once."""
    tarball, version = _debian_tarball(package)
    key = f"debian-{version}"
    dest = cache_root / "src" / key
    with cache.locked(cache_root / "locks" / f"src-{key}.lock"):
        if not (dest / ".git" / COMMIT_FILE).is_file():
            # New, or unpacked by a lab without the git model: unpack anew
            # (tar keeps the files' mtimes, so existing builds stay valid).
            _unpack_and_commit(tarball, dest, f"{package} {version}", log_dir)
        commit = (dest / ".git" / COMMIT_FILE).read_text().strip()
    return KernelSource(key, dest, f"Debian {package} {version}", commit=commit)


def _unpack_and_commit(tarball: Path, dest: Path, label: str, log_dir: Path) -> None:
    staging = dest.with_name(dest.name + ".partial")
    log_path = log_dir / "unpack-source.log"
    proc.run(["rm", "-rf", "--one-file-system", staging], timeout=900, error=BuildError)
    staging.mkdir(parents=True)
    proc.run(["tar", "-xf", tarball, "-C", staging, "--strip-components=1", "--no-same-owner"],
             timeout=900, log_path=log_path, error=BuildError, what="unpacking the kernel source")
    commit = gittree.commit_all(staging, f"{label} as unpacked from {tarball.name}",
                                log_path=log_path, init=True)
    (staging / ".git" / COMMIT_FILE).write_text(commit + "\n")
    cache.publish_dir(staging, dest)


# --- git trees -------------------------------------------------------------------


def clone_group(repo: Path) -> str:
    """The name of `repo`'s private clone and of its build folders' group
    (cache_root/src/NAME, cache_root/build/NAME): one per repository path."""
    return f"git-{cache.digest([str(repo)])[:12]}"


def _clone_for(repo: Path, cache_root: Path, log_dir: Path) -> tuple[Path, str]:
    """The lab's private clone of `repo` (made once): its own HEAD, index and
    working tree, the user's objects borrowed through alternates."""
    group = clone_group(repo)
    dest = cache_root / "src" / group
    if not gittree.is_repo(dest):
        staging = dest.with_name(dest.name + ".partial")
        proc.run(["rm", "-rf", "--one-file-system", staging], timeout=900, error=BuildError)
        staging.parent.mkdir(parents=True, exist_ok=True)
        gittree.git(staging.parent, "clone", "--quiet", "--shared", "--no-checkout", "--", repo,
                    staging, log_path=log_dir / "git.log")
        cache.publish_dir(staging, dest)
    return dest, group


def _user_repo(tree: Path, flag: str) -> Path:
    tree = tree.expanduser().resolve()
    if not gittree.is_repo(tree):
        raise ConfigError(f"{flag} {tree}: not a git repository (no .git folder)")
    return tree


def _fetch(clone: Path, repo: Path, log_dir: Path) -> None:
    """Bring the clone's refs up to date (objects are shared, so this is quick)."""
    gittree.git(clone, "fetch", "--quiet", "--no-tags", "--force", repo,
                "+refs/heads/*:refs/remotes/origin/*", log_path=log_dir / "git.log")


def git_source(repo: Path, rev: str, cache_root: Path, log_dir: Path, *,
               what: str = "--base") -> KernelSource:
    """Revision `rev` of the user's git tree (their tree is only read)."""
    repo = _user_repo(repo, what if what.startswith("--") else "source")
    commit = gittree.rev_commit(repo, rev, what=what, error=ConfigError)
    clone, group = _clone_for(repo, cache_root, log_dir)
    with cache.locked(cache_root / "locks" / f"src-{group}.lock"):
        if not gittree.has_objects(clone, [commit]):
            _fetch(clone, repo, log_dir)
    return KernelSource(f"{group}-{commit}", clone, f"{repo} at {commit[:12]} ({rev})",
                        group=group, commit=commit)


# The folder the lab writes its results to when run from inside a kernel tree
# (lab.config's default results_root is ./results): never part of the source.
RESULTS_DIR = "results"


def _exclude_results(clone: Path, repo: Path) -> None:
    """What is not the user's source: the ./results the lab writes when run
    from inside the tree, and what the user excludes in their own
    .git/info/exclude (a CI job's checkout of kernel-lab, for one). The
    private clone's exclude file applies to the user's work tree read through
    --work-tree, and touches nothing of theirs."""
    theirs = gittree.query(repo, "rev-parse", "--git-path", "info/exclude").stdout.strip()
    path = Path(theirs) if Path(theirs).is_absolute() else repo / theirs
    text = path.read_text(errors="replace") if theirs and path.is_file() else ""
    lines = [*text.splitlines(), f"/{RESULTS_DIR}/"]
    exclude = clone / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("\n".join(lines) + "\n")


def worktree_source(tree: Path, cache_root: Path, log_dir: Path) -> KernelSource:
    """The user's working tree as it is (tracked changes and untracked files
    that .gitignore does not exclude), as a commit in the private clone.

    git reads their files through `--work-tree` into the clone's own index and
    object store: their tree, HEAD and index are never written. The clone's
    index for this keeps the files' stat data, so a second snapshot of a
    barely changed tree hashes only what changed.
    """
    repo = _user_repo(tree, "--kernel-tree")
    head = gittree.rev_commit(repo, "HEAD", what="--kernel-tree HEAD", error=ConfigError)
    clone, group = _clone_for(repo, cache_root, log_dir)
    log_path = log_dir / "git.log"
    with cache.locked(cache_root / "locks" / f"src-{group}.lock"):
        if not gittree.has_objects(clone, [head]):
            _fetch(clone, repo, log_dir)
        env = {"GIT_INDEX_FILE": str(clone / ".git" / "lab-worktree-index")}

        def in_tree(*args: str) -> str:
            return gittree.git(clone, f"--work-tree={repo}", *args, env=env, log_path=log_path,
                               timeout=gittree.TREE_TIMEOUT_S).stdout.strip()

        # --reset (a one-tree merge that ignores local changes) keeps the stat
        # data of entries whose content did not change.
        in_tree("read-tree", "--reset", head)
        _exclude_results(clone, repo)
        in_tree("add", "-A", ".")
        tree_id = in_tree("write-tree")
        if tree_id == in_tree("rev-parse", f"{head}^{{tree}}"):
            commit = head  # no uncommitted changes: the same source as `--head HEAD`
        else:
            commit = in_tree("commit-tree", tree_id, "-p", head, "-m",
                             "working tree with uncommitted changes (kernel-lab snapshot)")
    label = f"{repo} working tree" + ("" if commit == head else " (uncommitted changes)")
    return KernelSource(f"{group}-{commit}", clone, f"{label} on {head[:12]}", group=group,
                        commit=commit)


def plain_tree_source(tree: Path, cache_root: Path, log_dir: Path) -> KernelSource:
    """A kernel tree that is not a git repository, copied and committed.

    rsync compares content and does not keep mtimes, so a changed file is
    newer than the objects built from it and make rebuilds it.
    """
    tree = tree.expanduser().resolve()
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise ConfigError(f"--kernel-tree {tree}: not a kernel source tree (no Makefile/Kconfig)")
    name = cache.digest([str(tree)])[:12]
    group = f"tree-{name}"
    dest = cache_root / "src" / group
    log_path = log_dir / "copy-tree.log"
    with cache.locked(cache_root / "locks" / f"src-{group}.lock"):
        dest.mkdir(parents=True, exist_ok=True)
        proc.run(["rsync", "-rlpD", "--checksum", "--delete", "--exclude=/.git",
                  f"--exclude=/{RESULTS_DIR}", f"{tree}/", f"{dest}/"],
                 timeout=1800, log_path=log_path, error=BuildError, what="copying the kernel tree")
        if (dest / ".config").exists() or (dest / "include/config").exists():
            # Built in place: kbuild refuses O= builds from such a tree.
            proc.run(["make", "-s", "-C", dest, "mrproper"], timeout=600, log_path=log_path,
                     error=BuildError, what="make mrproper in the private copy")
        commit = gittree.commit_all(dest, "kernel tree snapshot (kernel-lab)", log_path=log_path,
                                    init=not gittree.is_repo(dest))
    return KernelSource(f"{group}-{commit}", dest, f"kernel tree {tree}", group=group,
                        commit=commit)


def tree_source(tree: Path, cache_root: Path, log_dir: Path) -> KernelSource:
    """`--kernel-tree PATH` as it is: a git working tree or a plain folder."""
    path = tree.expanduser().resolve()
    if not (path / "Makefile").is_file() or not (path / "Kconfig").is_file():
        raise ConfigError(f"--kernel-tree {path}: not a kernel source tree (no Makefile/Kconfig)")
    if gittree.is_repo(path):
        return worktree_source(path, cache_root, log_dir)
    return plain_tree_source(path, cache_root, log_dir)


def ab_sources(tree: Path, base: str, head: str | None, cache_root: Path, log_dir: Path
               ) -> tuple[KernelSource, KernelSource]:
    """`--kernel-tree T --base REV [--head REV]`: (baseline, patched) sources.

    Both live in one private clone (one group), so the second is an
    incremental build of the first.
    """
    repo = _user_repo(tree, "--kernel-tree")
    base_commit = gittree.rev_commit(repo, base, what="--base", error=ConfigError)
    head_commit = gittree.rev_commit(repo, head or "HEAD", what="--head" if head else
                                     "--kernel-tree HEAD", error=ConfigError)
    if not gittree.related(repo, base_commit, head_commit):
        raise ConfigError(f"--base {base}: not related to {head or 'HEAD'} "
                          "(no common history; pick a revision the head was built on)")
    baseline = git_source(repo, base, cache_root, log_dir, what="--base")
    if head:
        patched = git_source(repo, head, cache_root, log_dir, what="--head")
    else:
        patched = worktree_source(repo, cache_root, log_dir)
    return baseline, patched
