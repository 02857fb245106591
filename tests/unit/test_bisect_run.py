"""`lab test --bisect-run` speaks git bisect run's codes exactly: 0 good, 1 bad,
125 this commit cannot be tested, 128 abort for anything that is not about the
commit. The bad-input cases run under a real `git bisect run` over a throwaway
kernel-shaped history (they exit before any build); the codes of kernel
verdicts (bad, flaky) are pure logic (tests/unit/test_verdict.py)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-m", "lab.cli"]


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def kernel_history(tmp_path):
    """Three commits of a tree with a kernel's top-level shape."""
    repo = tmp_path / "linux"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "master")
    for i in range(3):
        (repo / "Makefile").write_text(f"VERSION = 6\nPATCHLEVEL = {i}\n")
        (repo / "Kconfig").write_text("mainmenu \"Linux\"\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}")
    return repo


@pytest.mark.parametrize("args, why", [
    (["-k", "no-such-case"], "unknown case"),
    (["--script", "/no/such/script.sh"], "missing script"),
    (["--no-such-option"], "bad command line"),
])
def test_input_that_is_not_about_the_commit_aborts_git_bisect_run(kernel_history, args, why):
    repo = kernel_history
    assert _git(repo, "bisect", "start", "HEAD", "HEAD~2").returncode == 0
    out = _git(repo, "bisect", "run", *LAB, "test", "--bisect-run", "--kernel-tree", str(repo),
               *args)
    assert out.returncode != 0, why
    # git stops at once (128) instead of skipping (125) or calling it bad (1).
    said = out.stdout + out.stderr
    assert "128" in said, said
    assert "first bad commit" not in said and "skip" not in said.lower()
    log = _git(repo, "bisect", "log").stdout
    assert log.count("# bad:") == 1 and "# skip" not in log  # only what `start` said
    _git(repo, "bisect", "reset")


def test_an_unexpected_exception_is_128_not_bad(tmp_path):
    """A bug in the lab must never read as 'bad' (1) or 'cannot test' (125)."""
    script = textwrap.dedent("""
        import sys
        from lab import cli
        from lab.jobs import runs
        def broken(*a, **k):
            raise RuntimeError("a bug")
        runs.test_job = broken
        sys.exit(cli.main(["test", "--bisect-run", "-k", "flag-off", "--results", sys.argv[1]]))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r")], cwd=REPO,
                         text=True, capture_output=True, timeout=120)
    assert out.returncode == 128, out.stderr
    assert "internal error" in out.stderr
