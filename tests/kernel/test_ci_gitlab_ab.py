"""The GitLab component (templates/kernel-ab.yml) run for real by
gitlab-ci-local (shell executor) in a kernel-shaped repository, as a merge
request pipeline: the repository includes the component with its inputs,
the job A/Bs the head against CI_MERGE_REQUEST_DIFF_BASE_SHA with the lab
(linked in as the component's `lab-dir`) and leaves the verdict, the report
and the JUnit for the merge request widget."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.host import cache

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = REPO / ".venv" / "node" / "node_modules" / ".bin" / "gitlab-ci-local"
CALLER = """\
include:
  - local: templates/kernel-ab.yml
    inputs:
      lab-repository: https://gitlab.example.invalid/kernel-lab.git
      lab-ref: unused
      expect: parallel-direct-writes
      cases: parallel-nonextending
      accel: auto
      cache-dir: {cache}
"""


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE") or cache.default_root())


def pipeline(repo: Path, base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GITLAB_CI_LOCAL), "--force-shell-executor", "--no-color",
         "--variable", "CI_PIPELINE_SOURCE=merge_request_event",
         "--variable", f"CI_MERGE_REQUEST_DIFF_BASE_SHA={base}"],
        cwd=repo, capture_output=True, text=True, timeout=2200, check=False)


@pytest.fixture()
def mr_repo(kernel_repo, git) -> dict[str, str | Path]:
    """The kernel repository with the pipeline committed on top of each head
    (gitlab-ci-local reads local includes from git, as GitLab does)."""
    if not GITLAB_CI_LOCAL.exists():
        pytest.skip(f"{GITLAB_CI_LOCAL} missing: `make ci-tools`")
    repo = kernel_repo["repo"]
    heads = {}
    for name in ("good", "bad"):
        git(repo, "checkout", "-q", "-B", f"mr-{name}", str(kernel_repo[name]))
        (repo / "templates").mkdir(exist_ok=True)
        shutil.copy(REPO / "templates" / "kernel-ab.yml", repo / "templates" / "kernel-ab.yml")
        (repo / ".gitlab-ci.yml").write_text(CALLER.format(cache=cache_dir()))
        git(repo, "add", "-f", ".gitlab-ci.yml", "templates")  # Debian ignores "/*"
        git(repo, "commit", "-qm", "ci: kernel-lab A/B on merge requests")
        heads[name] = git(repo, "rev-parse", "HEAD")
    link = repo / ".kernel-lab"
    if not link.is_symlink():
        link.symlink_to(REPO)
    # What the pipeline leaves is not part of the kernel under test.
    (repo / ".git" / "info" / "exclude").write_text(
        "/.gitlab-ci-local/\n/results/\n/.kernel-lab\n")
    shutil.rmtree(repo / "results", ignore_errors=True)
    yield {"repo": repo, **heads}
    link.unlink()
    for extra in (".gitlab-ci-local", "results"):
        shutil.rmtree(repo / extra, ignore_errors=True)


def test_a_merge_request_pipeline_passes_with_the_patch_and_fails_without(
        kernel_repo, mr_repo, git, no_qemu_leak):
    repo = mr_repo["repo"]
    git(repo, "checkout", "-q", str(mr_repo["good"]))
    run = pipeline(repo, str(kernel_repo["base"]))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert " PASS  kernel-lab-ab" in log
    assert f"kernel-lab cache: {cache_dir()} (" in log  # the component's `cache-dir`
    summary = (repo / "results" / "ab-summary.md").read_text()
    assert summary.startswith("## kernel-lab A/B: passed (exit 0)")
    assert (repo / "results" / "ab" / "junit.xml").is_file()

    shutil.rmtree(repo / "results")
    git(repo, "checkout", "-q", str(mr_repo["bad"]))
    run = pipeline(repo, str(kernel_repo["base"]))
    log = run.stdout + run.stderr
    assert run.returncode != 0 and " FAIL  kernel-lab-ab" in log, log[-6000:]
    # The next pipeline of the merge request keeps the lab's cache and
    # rebuilds only its head: the base's kernel is the one built before.
    assert f"kernel-lab cache: {cache_dir()} (kept from earlier pipelines)" in log
    assert "kernel baseline: cached" in log
    summary = (repo / "results" / "ab-summary.md").read_text()
    assert "#### FAIL parallel-nonextending on patched" in summary
    assert "#### FAIL parallel-nonextending on patched" in log  # after_script shows it
    results = json.loads((repo / "results" / "ab" / "results.json").read_text())
    assert {(c["variant"], c["passed"]) for c in results["checks"]} == {
        ("baseline", True), ("patched", False)}
    assert not git(repo, "status", "--porcelain")
