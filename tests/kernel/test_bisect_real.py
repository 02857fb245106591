"""Real bisections: over the series' versions, and over a throwaway git tree
made from the Debian source (baseline, unrelated, v3, broken, v5, unrelated)."""

from __future__ import annotations

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
SERIES = REPO / "patches" / "fuse-parallel-dio"


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=2300)


@pytest.mark.parametrize(("case", "first"), [("truncate-race", "v4"), ("append", "v2")])
def test_series_bisect_finds_the_first_passing_version(case, first, tmp_path, no_qemu_leak):
    out = lab("bisect", "--series", str(SERIES), "--test", case, "--first-good",
              "--results", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "bisect.json").read_text())
    assert record["first"] == first, record["message"]
    assert len(record["steps"]) <= 4  # log2(5) rounded up, plus the two ends


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True).stdout.strip()


@pytest.fixture(scope="module")
def git_tree(tmp_path_factory, lab_cfg, logs, source_copy):
    """Six commits; only the file contents of each version are written."""
    base = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    series = pipeline.series_of(lab_cfg)
    # A fixed path (the repository is made anew each time): the lab keys its
    # private clone and build folder by the tree's path, so a second run of
    # this test builds incrementally instead of from scratch.
    repo = lab_cfg.cache_root / "test-trees" / "git-bisect"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    source_copy(base.source, repo, lab_cfg.cache_root)

    def version_files(patches) -> dict[str, str]:
        return build.files_after(patches, base.source, ["fs/fuse/file.c",
                                  "include/uapi/linux/fuse.h"], tmp_path_factory.mktemp("v"),
                                  cache_root=lab_cfg.cache_root)

    def commit(message: str, files: dict[str, str]) -> str:
        for rel, text in files.items():
            (repo / rel).write_text(text)
        _git(repo, "add", "-f", "-A")  # Debian's .gitignore ignores "/*"
        _git(repo, "-c", "user.name=lab", "-c", "user.email=lab@example.invalid",
             "commit", "-q", "-m", message)
        return _git(repo, "rev-parse", "HEAD")

    _git(repo, "init", "-q")
    shas = {"baseline": commit("baseline", version_files([series.baseline]))}
    shas["unrelated"] = commit("docs: unrelated", {
        "Documentation/lab-note.txt": "an unrelated change\n"})
    v3 = version_files([series.baseline, series.version("v3").patch])
    shas["v3"] = commit("fuse: v3", v3)
    shas["broken"] = commit("fuse: does not build", {
        "fs/fuse/file.c": v3["fs/fuse/file.c"] + "\nthis is not C;\n"})
    shas["v5"] = commit("fuse: v5", version_files([series.baseline, series.version("v5").patch]))
    shas["unrelated2"] = commit("docs: unrelated again", {
        "Documentation/lab-note.txt": "another unrelated change\n"})
    return repo, shas


def test_git_bisect_names_the_fix_and_skips_the_broken_build(git_tree, tmp_path, no_qemu_leak):
    repo, shas = git_tree
    head_before = _git(repo, "rev-parse", "HEAD")
    out = lab("bisect", "--kernel-tree", str(repo), "--bad", shas["v3"], "--good",
              shas["unrelated2"], "--test", "truncate-race", "--expect",
              "parallel-direct-writes", "--results", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "bisect.json").read_text())
    assert record["first"] == shas["v5"], record["message"]
    verdicts = {s["candidate"]: s["verdict"] for s in record["steps"]}
    assert verdicts.get(shas["broken"]) == "skip"
    # The user's tree was not touched.
    assert _git(repo, "rev-parse", "HEAD") == head_before
    assert _git(repo, "status", "--porcelain") == ""
