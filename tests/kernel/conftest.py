"""The lab's own kernel tests use the lab's pytest plugin (lab/pytest_plugin.py).

Builds and the image come from the lab's cache (the first run of the session
pays for them). VMs are booted once per session per variant and torn down at
the end, whatever happened in between. Which variants the suite judges:
`--lab-variants` (default baseline,patched), e.g.
`pytest tests/kernel --lab-variants baseline,v1,v2,v3,v4,v5,patched` for the
full calibration matrix. baseline and patched are always built: several
tests compare the two whatever the suite runs on.

The short names below (`variant`, `fleet`, `builds`, ...) are the plugin's
`lab_*` fixtures under the names these tests have always used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import pipeline
from lab.kernel import build
from lab.pytest_plugin import variant_names

FUSE_FILES = ["fs/fuse/file.c", "include/uapi/linux/fuse.h"]


@pytest.fixture(scope="session")
def lab_build_names(pytestconfig: pytest.Config) -> list[str]:
    return list(dict.fromkeys(["baseline", "patched", *variant_names(pytestconfig)]))


@pytest.fixture(scope="session")
def variant(lab_variant):
    return lab_variant


@pytest.fixture(scope="session")
def lab_cfg(lab_config):
    return lab_config


@pytest.fixture(scope="session")
def logs(lab_logs):
    return lab_logs


@pytest.fixture(scope="session")
def ui(lab_ui):
    return lab_ui


@pytest.fixture(scope="session")
def builds(lab_builds):
    return lab_builds


@pytest.fixture(scope="session")
def image(lab_image):
    return lab_image


@pytest.fixture(scope="session")
def accel(lab_accel):
    return lab_accel  # probed with the first build: the baseline's kernel


@pytest.fixture(scope="session")
def fleet(lab_fleet):
    """Booted VMs by variant name, started lazily and kept for the session."""
    return lab_fleet


@pytest.fixture
def no_qemu_leak(tmp_path_factory: pytest.TempPathFactory):
    """Fails a test that leaves a QEMU process of ours behind. Ours: its
    command line names a path under this session's pytest folder (the tests
    put their results there, and QEMU's console log with them), so VMs that
    other labs run on the same host do not count."""
    ours = str(tmp_path_factory.getbasetemp())
    before = _qemu_pids(ours)
    yield
    leaked = _qemu_pids(ours) - before
    assert not leaked, f"QEMU processes left running: {sorted(leaked)}"


def _qemu_pids(under: str) -> set[int]:
    out = subprocess.run(["pgrep", "-a", "-f", "qemu-system-x86_64 -name"],
                         capture_output=True, text=True, check=False).stdout
    return {int(line.split()[0]) for line in out.splitlines() if under in line}


# Fixed dates: the same commits every run, so their kernels come from the cache.
DATES = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def git_in(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev", "-c",
                           "user.email=dev@example.invalid", "-c", "gc.auto=0", *args],
                          check=True, text=True, capture_output=True,
                          env={**os.environ, **DATES}).stdout.strip()


def copy_source(source, dest: Path, cache_root: Path) -> None:
    """A cached kernel source's files (not its .git, nor the lab's marks) to
    `dest`, under the source's lock: a lab process building from it at the
    same time would have its patches applied."""
    with build.locked_source(source, cache_root):
        subprocess.run(["rsync", "-a", "--exclude=/.lab-*", "--exclude=/.git",
                        f"{source.path}/", f"{dest}/"], check=True)


@pytest.fixture(scope="session")
def source_copy():
    """`source_copy(source, dest, cache_root)`: copy_source for test modules."""
    return copy_source


@pytest.fixture(scope="session")
def git():
    """`git(repo, *args)`: git in a test repository, as a fixed developer on a fixed date."""
    return git_in


@pytest.fixture(scope="session")
def kernel_repo(tmp_path_factory, lab_cfg, logs) -> dict[str, str | Path]:
    """base: the feature out; good: base + the series' newest version; bad: base +
    a comment only (claims the feature, does not have it)."""
    base = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    series = pipeline.series_of(lab_cfg)
    repo = lab_cfg.cache_root / "test-trees" / "git-ci"  # fixed: builds are incremental
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    copy_source(base.source, repo, lab_cfg.cache_root)
    scratch = tmp_path_factory.mktemp("files")
    revs: dict[str, str | Path] = {"repo": repo}
    for name, patches in (("base", [series.baseline]),
                          ("good", [series.baseline, series.version(series.newest).patch])):
        for rel, text in build.files_after(patches, base.source, FUSE_FILES,
                                           scratch / name, cache_root=lab_cfg.cache_root
                                           ).items():
            (repo / rel).write_text(text)
        if name == "base":
            git_in(repo, "init", "-q", "-b", "main")
            git_in(repo, "add", "-f", "-A")  # Debian's .gitignore ignores "/*"
            git_in(repo, "commit", "-qm", "baseline: every direct write exclusive")
        else:
            git_in(repo, "commit", "-qam", "fuse: parallel direct writes")
        revs[name] = git_in(repo, "rev-parse", "HEAD")
    git_in(repo, "checkout", "-q", "-b", "bad", str(revs["base"]))
    with (repo / "fs/fuse/file.c").open("a") as f:
        f.write("/* parallel direct writes: coming soon */\n")
    git_in(repo, "commit", "-qam", "fuse: claims parallel direct writes, has none")
    revs["bad"] = git_in(repo, "rev-parse", "HEAD")
    return revs
