"""Sources on tiny real git trees: snapshots, A/B revisions, bad revisions.

The user's tree must come out exactly as it went in: same `git status`,
same HEAD, the same index file byte for byte.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from lab import config
from lab.errors import ConfigError
from lab.kernel import build, gittree, sources, variants

REPO = Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev", "-c",
                           "user.email=dev@example.invalid", *args], check=True, text=True,
                          capture_output=True).stdout.strip()


def _fingerprint(repo: Path) -> tuple[str, str, str]:
    index = hashlib.sha256((repo / ".git/index").read_bytes()).hexdigest()
    return (_git(repo, "status", "--porcelain", "--ignored"), _git(repo, "rev-parse", "HEAD"),
            index)


@pytest.fixture
def user_tree(tmp_path: Path) -> Path:
    """A user's kernel-like tree: two commits, then uncommitted work and build output."""
    repo = tmp_path / "linux"
    (repo / "fs").mkdir(parents=True)
    (repo / "Makefile").write_text("all:\n")
    (repo / "Kconfig").write_text("# kconfig\n")
    (repo / ".gitignore").write_text("*.o\n")
    (repo / "fs/file.c").write_text("int base;\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    (repo / "fs/file.c").write_text("int second;\n")
    _git(repo, "commit", "-qam", "second")
    (repo / "fs/file.c").write_text("int uncommitted;\n")  # tracked, modified
    (repo / "fs/new.c").write_text("int untracked;\n")  # untracked, not ignored
    (repo / "fs/file.o").write_text("object")  # ignored build output
    return repo


def _files(src: build.KernelSource) -> dict[str, str]:
    listing = gittree.git(src.path, "ls-tree", "-r", "--name-only", src.commit).stdout.split()
    return {name: gittree.git(src.path, "show", f"{src.commit}:{name}").stdout
            for name in listing}


def test_working_tree_snapshot_leaves_the_users_tree_alone(user_tree, tmp_path):
    before = _fingerprint(user_tree)
    src = sources.worktree_source(user_tree, tmp_path / "cache", tmp_path / "logs")
    files = _files(src)
    assert files["fs/file.c"] == "int uncommitted;\n"
    assert files["fs/new.c"] == "int untracked;\n"
    assert "fs/file.o" not in files  # .gitignore is respected
    assert _fingerprint(user_tree) == before
    # The same tree again is the same source (same commit, same build key).
    assert sources.worktree_source(user_tree, tmp_path / "cache", tmp_path / "logs") == src
    (user_tree / "fs/file.c").write_text("int changed_again;\n")
    again = sources.worktree_source(user_tree, tmp_path / "cache", tmp_path / "logs")
    assert again.commit != src.commit and again.group == src.group


def test_a_clean_working_tree_is_its_head(user_tree, tmp_path):
    _git(user_tree, "checkout", "-q", "--", "fs/file.c")
    (user_tree / "fs/new.c").unlink()
    src = sources.worktree_source(user_tree, tmp_path / "cache", tmp_path / "logs")
    assert src.commit == _git(user_tree, "rev-parse", "HEAD")


def test_the_labs_results_inside_the_tree_are_not_source(user_tree, tmp_path):
    """Run from inside a kernel tree, the lab writes ./results there."""
    _git(user_tree, "checkout", "-q", "--", "fs/file.c")
    (user_tree / "fs/new.c").unlink()
    (user_tree / "results" / "test-1").mkdir(parents=True)
    (user_tree / "results" / "test-1" / "results.json").write_text("{}")
    src = sources.worktree_source(user_tree, tmp_path / "cache", tmp_path / "logs")
    assert src.commit == _git(user_tree, "rev-parse", "HEAD")


def test_ab_sources_share_one_clone_and_build_group(user_tree, tmp_path):
    before = _fingerprint(user_tree)
    base, head = sources.ab_sources(user_tree, "HEAD~1", None, tmp_path / "cache",
                                    tmp_path / "logs")
    assert base.path == head.path and base.group == head.group
    assert _files(base)["fs/file.c"] == "int base;\n"
    assert _files(head)["fs/file.c"] == "int uncommitted;\n"
    assert "(uncommitted changes)" in head.description
    # The build checks each one out in turn, proving the clone clean each time.
    for src, want in ((base, "int base;\n"), (head, "int uncommitted;\n"), (base, "int base;\n")):
        build.restore_tree(src.path, src.commit)
        assert (src.path / "fs/file.c").read_text() == want
        assert gittree.dirty(src.path) == []
    _, head_rev = sources.ab_sources(user_tree, "HEAD~1", "HEAD", tmp_path / "cache",
                                     tmp_path / "logs")
    assert _files(head_rev)["fs/file.c"] == "int second;\n"
    assert _fingerprint(user_tree) == before


def test_a_base_that_does_not_exist_or_is_unrelated_is_named(user_tree, tmp_path):
    cfg = config.LabConfig(cache_root=tmp_path / "cache")
    with pytest.raises(ConfigError, match="--base 'no-such-rev': no such commit"):
        variants.from_request(cfg, names=[], log_dir=tmp_path, kernel_tree=user_tree,
                              base="no-such-rev")
    _git(user_tree, "checkout", "-q", "--orphan", "other")
    _git(user_tree, "commit", "-qm", "unrelated history")
    orphan = _git(user_tree, "rev-parse", "HEAD")
    _git(user_tree, "checkout", "-q", "-f", "master")
    with pytest.raises(ConfigError, match=f"--base {orphan}: not related to HEAD"):
        variants.from_request(cfg, names=[], log_dir=tmp_path, kernel_tree=user_tree, base=orphan)
    with pytest.raises(ConfigError, match="--head 'nope': no such commit"):
        variants.from_request(cfg, names=[], log_dir=tmp_path, kernel_tree=user_tree,
                              base="HEAD", head="nope")
    with pytest.raises(ConfigError, match="with --base, the variants are baseline"):
        variants.from_request(cfg, names=["v1"], log_dir=tmp_path, kernel_tree=user_tree,
                              base="HEAD")
    assert not (tmp_path / "cache" / "kernels").exists()


def test_the_cli_exits_2_naming_a_bad_base(user_tree, tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab.cli", "build", "--kernel-tree",
                          str(user_tree), "--base", "v0.0-missing", "--results", str(tmp_path)],
                         cwd=REPO, text=True, capture_output=True, timeout=120,
                         env={"LAB_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "v0.0-missing" in out.stderr


def test_ab_variants_carry_the_heads_claim_only(user_tree, tmp_path):
    cfg = config.LabConfig(cache_root=tmp_path / "cache")
    vs = variants.from_request(cfg, names=[], log_dir=tmp_path, kernel_tree=user_tree,
                               base="HEAD~1", expect=["parallel-direct-writes"], strict=True)
    assert [(v.name, v.features, v.strict) for v in vs] == [
        ("baseline", (), True), ("patched", ("parallel-direct-writes",), True)]
    assert vs[0].source.commit == _git(user_tree, "rev-parse", "HEAD~1")


def test_a_plain_folder_is_copied_and_committed(tmp_path):
    tree = tmp_path / "plain"
    (tree / "fs").mkdir(parents=True)
    (tree / "Makefile").write_text("all:\n")
    (tree / "Kconfig").write_text("\n")
    (tree / "fs/a.c").write_text("int a;\n")
    first = sources.tree_source(tree, tmp_path / "cache", tmp_path / "logs")
    assert gittree.dirty(first.path) == [] and (first.path / "fs/a.c").read_text() == "int a;\n"
    (tree / "fs/a.c").write_text("int b;\n")
    second = sources.tree_source(tree, tmp_path / "cache", tmp_path / "logs")
    assert second.key != first.key and second.path == first.path
    assert not (tree / ".git").exists()


def test_a_tree_made_anew_at_the_same_path_reuses_the_clone(user_tree, tmp_path):
    """The tests (and users) recreate throwaway trees at one path: the clone's old
    HEAD and refs then point at objects that are gone."""
    cache_root, logs = tmp_path / "cache", tmp_path / "logs"
    old = sources.git_source(user_tree, "HEAD~1", cache_root, logs)
    build.restore_tree(old.path, old.commit)
    subprocess.run(["rm", "-rf", str(user_tree / ".git")], check=True)
    _git(user_tree, "init", "-q")
    _git(user_tree, "add", "-A")
    _git(user_tree, "commit", "-qm", "a new history")
    new = sources.git_source(user_tree, "HEAD", cache_root, logs)
    assert new.path == old.path and new.commit != old.commit
    build.restore_tree(new.path, new.commit)
    assert (new.path / "fs/file.c").read_text() == "int uncommitted;\n"
    assert gittree.dirty(new.path) == []
    snap = sources.worktree_source(user_tree, cache_root, logs)
    assert snap.commit == new.commit
