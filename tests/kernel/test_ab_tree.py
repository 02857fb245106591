"""A/B on a user's own git tree: `lab test --kernel-tree T --base REV`.

The tree is a throwaway git repository made from the series' Debian source:
one commit with the feature taken out (the baseline patch), and the series'
newest version written into the working tree without committing it, as a
developer's work in progress. The lab builds HEAD as `baseline` and the
working tree as `patched`, judges both, and the user's tree comes out
exactly as it went in: same `git status`, HEAD and index file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import pipeline
from lab.kernel import build

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
FUSE_FILES = ["fs/fuse/file.c", "include/uapi/linux/fuse.h"]


def _git(repo: Path, *args: str) -> str:
    # gc.auto=0: an automatic gc detaches and would still be writing into the
    # tree when the next run removes it.
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev", "-c",
                           "user.email=dev@example.invalid", "-c", "gc.auto=0", *args],
                          check=True, text=True, capture_output=True).stdout.strip()


def _fingerprint(repo: Path) -> dict[str, str]:
    return {"status": _git(repo, "status", "--porcelain"), "head": _git(repo, "rev-parse", "HEAD"),
            "index": hashlib.sha256((repo / ".git/index").read_bytes()).hexdigest()}


@pytest.fixture(scope="module")
def dev_tree(tmp_path_factory, lab_cfg, logs, source_copy) -> Path:
    base = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    series = pipeline.series_of(lab_cfg)
    # A fixed path: the lab keys its private clone and build folders by the
    # tree's path, so a second run of this test builds incrementally.
    repo = lab_cfg.cache_root / "test-trees" / "git-ab"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    source_copy(base.source, repo, lab_cfg.cache_root)
    scratch = tmp_path_factory.mktemp("files")
    for name, patches in (("base", [series.baseline]),
                          ("head", [series.baseline, series.version(series.newest).patch])):
        files = build.files_after(patches, base.source, FUSE_FILES, scratch / name,
                                  cache_root=lab_cfg.cache_root)
        for rel, text in files.items():
            (repo / rel).write_text(text)
        if name == "base":
            _git(repo, "init", "-q")
            _git(repo, "add", "-f", "-A")  # Debian's .gitignore ignores "/*"
            _git(repo, "commit", "-qm", "baseline: every direct write exclusive")
    assert _git(repo, "diff", "--name-only").split() == FUSE_FILES  # uncommitted work
    return repo


def test_ab_of_a_working_tree_judges_both_and_leaves_the_tree_alone(dev_tree, tmp_path,
                                                                     no_qemu_leak):
    before = _fingerprint(dev_tree)
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "test", "--kernel-tree", str(dev_tree), "--base",
         "HEAD", "--expect", "parallel-direct-writes", "-k", "parallel-nonextending",
         "--results", str(tmp_path)],
        cwd=REPO, text=True, capture_output=True, timeout=2300)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    variants = results["variants"]
    assert set(variants) == {"baseline", "patched"}
    assert f"at {before['head'][:12]} (HEAD)" in variants["baseline"]["source"]
    assert "working tree (uncommitted changes)" in variants["patched"]["source"]
    assert variants["patched"]["features"] == ["parallel-direct-writes"]
    checks = {(c["variant"], c["name"]): c for c in results["checks"]}
    assert checks[("baseline", "parallel-nonextending")]["passed"]
    assert checks[("patched", "parallel-nonextending")]["passed"]
    # The user's tree, HEAD and index are exactly as before.
    assert _fingerprint(dev_tree) == before


def test_a_base_unrelated_to_the_head_exits_2_before_any_build(dev_tree, tmp_path):
    empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree
    orphan = _git(dev_tree, "commit-tree", "-m", "unrelated", empty_tree)
    before = _fingerprint(dev_tree)
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "build", "--kernel-tree", str(dev_tree), "--base",
         orphan, "--results", str(tmp_path)],
        cwd=REPO, text=True, capture_output=True, timeout=600)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"--base {orphan}: not related to HEAD" in out.stderr
    assert _fingerprint(dev_tree) == before
