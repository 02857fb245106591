"""reproduce.sh, run for real: in a throwaway clone of this repository, unchanged
(nothing differs) and changed (a new commit, an uncommitted change to a config
fragment, an edited lab.toml, an edited job file), where it must say each."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.jobs import reproduce

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"

pytestmark = pytest.mark.skipif(shutil.which("git") is None or not VENV.is_dir(),
                                reason="needs git and the project's .venv")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=lab@example.invalid",
                    "-c", "user.name=lab", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    """A clone of this repository's HEAD, with our .venv (ignored by git) linked in."""
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120)
    (dest / ".venv").symlink_to(VENV)
    # .gitignore's `.venv/` matches a folder, not this link.
    with (dest / ".git" / "info" / "exclude").open("a") as f:
        f.write(".venv\n")
    (dest / "lab.toml").write_text("[bench]\nrepeat = 2\n")
    (dest / "mine.fio").write_text("[w]\nrw=write\nsize=1m\n")
    _git(dest, "add", "lab.toml", "mine.fio")
    _git(dest, "commit", "-q", "-m", "the run's state")
    return dest


def _run(script: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_REPO", "PYTHONPATH")}
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env, check=False)


def test_unchanged_checkout_matches_and_a_changed_one_says_what_differs(clone, tmp_path):
    out = tmp_path / "results" / "run-1"
    out.mkdir(parents=True)
    argv = ["bench", "--config", "lab.toml", "--job-file", "mine.fio", "--results", str(out)]
    script = reproduce.write(out, argv, variant_keys={"baseline": "0123abcd"}, repo=clone,
                             cwd=clone)
    text = script.read_text()
    assert "# Recorded command: lab bench --config lab.toml --job-file mine.fio" in text
    assert "# Build key of baseline: 0123abcd" in text
    assert "[bench]\nrepeat = 2\n" in text  # the config, embedded

    same = _run(script, clone, "--check")
    assert same.returncode == 0, same.stderr
    assert "same lab commit, files, config and build inputs" in same.stderr

    (clone / "README.md").write_text("changed\n")
    _git(clone, "commit", "-q", "-am", "a later lab")
    with (clone / "kernels" / "guest.config").open("a") as f:
        f.write("# an uncommitted change to a config fragment\n")
    (clone / "lab.toml").write_text("[bench]\nrepeat = 5\n")
    (clone / "mine.fio").write_text("[w]\nrw=write\nsize=2m\n")

    changed = _run(script, clone, "--check")
    assert changed.returncode == 1
    said = changed.stderr
    assert "differs: lab commit: the run used " in said
    assert "README.md" in said  # git diff --stat between the two commits
    assert "differs: uncommitted changes in this checkout (the run had none)" in said
    assert "kernels/guest.config" in said
    assert "differs: file mine.fio: its content changed since the run" in said
    assert "differs: build key input config-fragments: the run had" in said
    assert "differs: config: lab.toml changed since the run" in said
    assert "-repeat = 2" in said and "+repeat = 5" in said
    # Untouched inputs are not reported.
    assert "kernel-source" not in said and "compiler" not in said


def test_it_runs_the_recorded_command_with_the_pinned_config(clone, tmp_path):
    out = tmp_path / "run-2"
    out.mkdir()
    # `lab build --print-cache-key` stands in for a run: cheap, and it prints
    # what the pinned config decides (the config fragments it names).
    (clone / "lab.toml").write_text('[lab]\nfragments = ["kernels/guest.config"]\n')
    _git(clone, "commit", "-q", "-am", "config")
    script = reproduce.write(out, ["build", "--print-cache-key"], repo=clone, cwd=clone)
    (clone / "lab.toml").write_text(
        '[lab]\nfragments = ["kernels/guest.config", "kernels/debug.config"]\n')
    ran = _run(script, tmp_path)  # from outside: finds the recorded checkout
    assert ran.returncode == 0, ran.stderr
    assert "differs: config: lab.toml changed since the run" in ran.stderr
    assert "running: lab build --print-cache-key (with the pinned config)" in ran.stderr
    printed = dict(line.split("=", 1) for line in ran.stdout.splitlines())
    recorded = [line for line in script.read_text().splitlines()
                if line.startswith("input-config-fragments=")]
    # The run used the recorded config (one fragment), not the edited one (two).
    assert recorded == [f"input-config-fragments={printed['input-config-fragments']}"]
    assert not list(clone.glob(".lab-reproduce-*"))  # the pinned copy is cleaned up
