"""A patch as kernel developers have it: `--patch -` and `--patch <(b4 am -o - ...)`
are read once and kept by content, so the build key sees the same bytes."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
V5 = REPO / "patches" / "fuse-parallel-dio" / "v5.patch"


def _key(tmp_path, *args, stdin=None):
    env = {**os.environ, "LAB_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "lab.cli", "build", "--variant", "user",
                           "--print-cache-key", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, input=stdin, timeout=120)


def test_stdin_and_a_pipe_are_kept_as_one_file_by_content(tmp_path):
    from_stdin = _key(tmp_path, "--patch", "-", stdin=V5.read_text())
    assert from_stdin.returncode == 0, from_stdin.stderr
    line = next(x for x in from_stdin.stdout.splitlines()
                if x.startswith("input-user-patches"))
    piped = subprocess.run(["bash", "-c", f'{sys.executable} -m lab.cli build --variant user '
                            f'--print-cache-key --patch <(cat {V5})'], cwd=REPO, text=True,
                           capture_output=True, timeout=120,
                           env={**os.environ, "LAB_CACHE": str(tmp_path / "cache")})
    assert piped.returncode == 0, piped.stderr
    assert line in piped.stdout.splitlines()
    (kept,) = (tmp_path / "cache" / "patches").iterdir()
    assert kept.read_bytes() == V5.read_bytes()


def test_an_empty_stream_is_bad_input(tmp_path):
    out = _key(tmp_path, "--patch", "-", stdin="")
    assert out.returncode == 2
    assert "--patch -: the stream held nothing" in out.stderr
