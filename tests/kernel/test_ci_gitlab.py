"""The GitLab template, run for real by gitlab-ci-local (shell executor) in a
clone of this repository: prepare -> both suite shards -> merge-test, on a
tiny configuration (one case, `flag-off`, on `baseline`, with the cached
kernels and image). What really runs: every line of those jobs as written,
with `make setup` finding this checkout's .venv ready (linked into the clone,
the clone's own lab code first on PYTHONPATH) and LAB_CACHE pointing at this
machine's cache; the KVM runner tag means
nothing to gitlab-ci-local. The bench shards and `make test` are not run here
(the real-VM tests and the shard/merge tests cover them)."""

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
TEMPLATE = "ci/gitlab/.gitlab-ci.yml"


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    if not GITLAB_CI_LOCAL.exists():
        pytest.skip(f"{GITLAB_CI_LOCAL} missing: `make ci-tools`")
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, timeout=120)
    shutil.copy(REPO / TEMPLATE, dest / TEMPLATE)  # the template as it is in this tree
    (dest / ".venv").symlink_to(REPO / ".venv")
    with (dest / ".git" / "info" / "exclude").open("a") as f:
        f.write(".venv\n.gitlab-ci-local/\n")
    # The linked venv is up to date for make (its stamp is newer than this).
    os.utime(dest / "pyproject.toml", (0, 0))
    return dest


def gitlab_ci_local(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GITLAB_CI_LOCAL), "--file", TEMPLATE, "--force-shell-executor", "--no-color",
         "--variable", f"LAB_CACHE={os.environ.get('LAB_CACHE') or cache.default_root()}",
         # The linked venv installs this checkout's lab (editable); the jobs
         # must run the clone's, which reads the clone's lab.toml.
         "--variable", f"PYTHONPATH={clone}",
         *args],
        cwd=clone, capture_output=True, text=True, timeout=2200, check=False)


def test_prepare_one_shard_and_the_merge_run(clone: Path):
    run = gitlab_ci_local(clone, "--variable", "LAB_ACCEL=auto",
                          "--variable", "LAB_TEST_ARGS=-k flag-off --variant baseline",
                          "--needs", "merge-test")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    for job in ("prepare", "suite: [1/2]", "suite: [2/2]", "merge-test"):
        assert f" PASS  {job}" in log, job
    assert "bench: [1/2]" not in log and "merge-bench" not in log
    merged = json.loads((clone / "results" / "merged" / "test" / "results.json").read_text())
    assert [(c["name"], c["variant"], c["passed"]) for c in merged["checks"]] == [
        ("flag-off", "baseline", True)]
    assert (clone / "results" / "merged" / "test" / "junit.xml").is_file()
    # Each shard wrote its own folder; the merge took both.
    assert (clone / "results" / "test-shard-1" / "results.json").is_file()
    assert (clone / "results" / "test-shard-2" / "results.json").is_file()


def test_prepare_fails_fast_when_kvm_is_expected_but_does_not_work(clone: Path):
    run = gitlab_ci_local(clone, "prepare")  # LAB_ACCEL=kvm, as the template says
    log = run.stdout + run.stderr
    if run.returncode == 0:
        # A host whose KVM works: the proof boot ran on it.
        assert "accelerator: kvm" in log
    else:
        # No working KVM here: the lab refuses to fall back to TCG, saying why.
        assert "--accel kvm" in log, log[-4000:]
        assert "lab ssh baseline -- true" in log
