"""User scripts without a VM: input checks, the verdict, config and CLI wiring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import config
from lab.errors import ConfigError
from lab.results import SubResult
from lab.suite import scripts
from lab.vm import console

REPO = Path(__file__).resolve().parents[2]
KTAP_OK = "KTAP version 1\n1..2\nok 1 write\nok 2 verify # SKIP no data\n"


def make_script(path: Path, body: str = "exit 0\n", mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def run(status: int | None, stdout: str = "", stderr: str = "", **kw) -> scripts.ScriptRun:
    return scripts.ScriptRun(status, stdout, stderr, duration_s=1.5, limit_s=40.0, **kw)


def test_resolve_names_the_option_and_the_file(tmp_path):
    good = make_script(tmp_path / "good.sh")
    assert scripts.resolve([good], "--script") == (scripts.Script(good),)
    with pytest.raises(ConfigError, match=r"--script: .*missing.sh: no such file"):
        scripts.resolve([tmp_path / "missing.sh"], "--script")
    with pytest.raises(ConfigError, match="not a regular file"):
        scripts.resolve([tmp_path], "--script")
    plain = make_script(tmp_path / "plain.sh", mode=0o644)
    with pytest.raises(ConfigError, match=r"\[tests\] scripts: .*plain.sh: not executable"):
        scripts.resolve([plain], "[tests] scripts")
    (tmp_path / "b").mkdir()
    twin = make_script(tmp_path / "b" / "good.sh")
    with pytest.raises(ConfigError, match="two scripts named good.sh"):
        scripts.resolve([good, twin], "--script")
    assert len(scripts.resolve([good, good], "--script")) == 1  # the same file twice


def test_a_passing_ktap_script(tmp_path):
    s = scripts.Script(tmp_path / "io.sh")
    obs = scripts.judge(s.identity, run(0, KTAP_OK))
    assert obs.passed
    assert obs.observed == "KTAP 1: 1 ok, 1 skipped; exit 0"
    assert obs.expected == "exit 0 within 40s; every KTAP/TAP test ok"
    assert obs.subtests == (SubResult("write", True), SubResult("verify", True, "SKIP"))
    assert obs.details["parsed"] and obs.details["format"] == "KTAP 1"
    assert obs.details["exit_status"] == 0 and not obs.timed_out


def test_exit_status_and_ktap_must_both_say_pass(tmp_path):
    s = scripts.Script(tmp_path / "io.sh")
    failing_ktap = KTAP_OK.replace("ok 1 write", "not ok 1 write")
    assert not scripts.judge(s.identity, run(0, failing_ktap)).passed
    assert not scripts.judge(s.identity, run(0, KTAP_OK.replace("1..2", "1..3"))).passed
    obs = scripts.judge(s.identity, run(1, KTAP_OK, "verify: mismatch at 4096\n"))
    assert not obs.passed  # every KTAP test ok, but the exit status says no
    assert obs.observed == ("exit 1; KTAP 1: 1 ok, 1 skipped; "
                            "stderr: verify: mismatch at 4096")
    obs = scripts.judge(s.identity, run(1, failing_ktap))
    assert obs.observed == "KTAP 1: 0 ok, 1 skipped, 1 not ok (write); exit 1"


def test_output_that_is_not_ktap_leaves_the_verdict_to_the_exit_status(tmp_path):
    s = scripts.Script(tmp_path / "plain.sh")
    good = scripts.judge(s.identity, run(0, "copied 4 files\nall fine\n"))
    assert good.passed and "not parsed" in good.observed
    assert good.details["parsed"] is False and good.subtests == ()
    assert good.expected == "exit 0 within 40s"
    bad = scripts.judge(s.identity, run(3, "copied 4 files\n"))
    assert not bad.passed and bad.observed.startswith("exit 3; output not parsed")


def test_a_timeout_fails_with_the_blocked_tasks(tmp_path):
    report = ("[   52.1] sysrq: Show Blocked State\n"
              "[   52.1] task:dd              state:D stack:0     pid:301   ppid:290\n"
              "[   52.1] Call Trace:\n[   52.1]  <TASK>\n[   52.1]  fuse_simple_request+0x1\n")
    obs = scripts.judge(scripts.Script(tmp_path / "hang.sh").identity,
                        run(None, "KTAP version 1\n1..2\nok 1 a\n", blocked_tasks=report))
    assert not obs.passed
    assert obs.observed.startswith("timed out after 40s; blocked in the kernel: dd;")
    assert obs.details["blocked_tasks"] == report and obs.timed_out
    assert obs.subtests == (SubResult("a", True),)
    idle = scripts.judge(scripts.Script(tmp_path / "sleep.sh").identity, run(None))
    assert "no task blocked in the kernel" in idle.observed


def test_blocked_names():
    text = ("task:kworker/0:1  state:D stack:0\ntask:dd state:D stack:0\n"
            "task:dd state:D stack:0\n")
    assert console.blocked_task_names(text) == ["kworker/0:1", "dd"]


def test_cases_are_named_after_the_file_and_keep_their_variant(tmp_path):
    a, b = make_script(tmp_path / "a.sh"), make_script(tmp_path / "b.sh")
    items = scripts.items([str(a), str(b)], ["baseline", "patched"], 60.0)
    assert [(v, c.name, c.number) for v, c in items] == [
        ("baseline", "script:a.sh", 101), ("baseline", "script:b.sh", 102),
        ("patched", "script:a.sh", 101), ("patched", "script:b.sh", 102)]
    assert scripts.items([], ["baseline"], 60.0) == []


def test_lab_toml_tests_section(tmp_path):
    make_script(tmp_path / "t.sh")
    toml = tmp_path / "lab.toml"
    toml.write_text('[tests]\nscripts = ["t.sh"]\nscript_timeout_s = 30\n')
    cfg = config.load(toml)
    assert cfg.tests.scripts == (str(tmp_path / "t.sh"),)
    assert cfg.tests.script_timeout_s == 30.0
    toml.write_text('[tests]\nscript = ["t.sh"]\n')
    with pytest.raises(ConfigError, match="unknown key `script`"):
        config.load(toml)
    toml.write_text("[tests]\nscript_timeout_s = 0\n")
    with pytest.raises(ConfigError, match="script_timeout_s: must be positive"):
        config.load(toml)


def lab(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                         capture_output=True, timeout=60)
    out.stderr = " ".join(out.stderr.split())  # rich wraps long lines
    return out


@pytest.mark.parametrize("cmd", ["test", "run"])
def test_bad_scripts_exit_2_before_any_build(tmp_path, cmd):
    """Nothing is built or booted: the results folder is never even created."""
    results = tmp_path / "results"
    missing = lab(cmd, "--script", str(tmp_path / "nope.sh"), "--results", str(results))
    assert missing.returncode == 2, missing.stderr
    assert "--script:" in missing.stderr and "nope.sh: no such file" in missing.stderr
    plain = make_script(tmp_path / "plain.sh", mode=0o644)
    not_exec = lab(cmd, "--script", str(plain), "--results", str(results))
    assert not_exec.returncode == 2 and "not executable" in not_exec.stderr
    toml = tmp_path / "lab.toml"
    toml.write_text('[tests]\nscripts = ["gone.sh"]\n')
    from_config = lab(cmd, "--config", str(toml), "--results", str(results))
    assert from_config.returncode == 2 and "[tests] scripts" in from_config.stderr
    assert not results.exists()


def test_script_timeout_must_be_positive():
    out = lab("test", "--script-timeout", "0")
    assert out.returncode == 2 and "--script-timeout" in out.stderr
