"""lab.toml validation: every bad value is refused with its section and key,
as bad input (exit 2), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lab import config
from lab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BAD = [
    ('[bench]\njobs = ["4"]', r"\[bench\] jobs\[0\]: must be an integer, not '4'"),
    ("vm = 5", r"\[vm\]: must be a table, not 5"),
    ('[lab]\nfragments = "a.config"', r"\[lab\] fragments: must be a list"),
    ("[vm]\nboot_timeout_s = nan", r"\[vm\] boot_timeout_s: must be a finite number"),
    ("[vm]\nboot_timeout_s = inf", r"\[vm\] boot_timeout_s: must be a finite number"),
    ("[vm]\nboot_timeout_s = -1", r"\[vm\] boot_timeout_s: must be positive"),
    ("[vm]\nvcpus = 0", r"\[vm\] vcpus: must be at least 1"),
    ("[vm]\nvcpus = true", r"\[vm\] vcpus: must be an integer"),
    ("[vm]\nvcpus = 2.0", r"\[vm\] vcpus: must be an integer"),
    ("[vm]\nmemory_mib = 0", r"\[vm\] memory_mib: must be at least 256"),
    ('[vm]\naccel = "fast"', r"\[vm\] accel: must be one of 'auto', 'kvm' or 'tcg'"),
    ("[vm]\nvcpu = 4", r"\[vm\] unknown key `vcpu` \(known: vcpus"),
    ("[bench]\nrepeat = 0", r"\[bench\] repeat: must be at least 1"),
    ("[bench]\nconcurrency_writers = -3", r"\[bench\] concurrency_writers: must be at least 1"),
    ("[bench]\nruntime_s = 0", r"\[bench\] runtime_s: must be at least 1"),
    ("[bench]\nwrite_delay_us = -1", r"\[bench\] write_delay_us: must be at least 0"),
    ("[bench]\njobs = [0]", r"\[bench\] jobs\[0\]: must be at least 1"),
    ('[bench]\nworkloads = ["ssf", "zzz"]', r"\[bench\] workloads\[1\]: must be one of"),
    ("[bench]\nmodes = []", r"\[bench\] modes: at least one mode"),
    ('[bench]\njob_file = "missing.fio"', r"\[bench\] job_file: .*missing.fio does not exist"),
    ("[tests]\nscript_timeout_s = 0", r"\[tests\] script_timeout_s: must be positive"),
    ('[tests]\nscripts = ["nope.sh"]', r"\[tests\] scripts: .*nope.sh does not exist"),
    ("[lab]\nseries = 3", r"\[lab\] series: must be a string"),
    ("[other]\nx = 1", r"unknown section \[other\]"),
    ("[vm\n", r"lab.toml"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[0].replace("\n", " ") for b in BAD])
def test_bad_values_name_the_key(tmp_path, text, message):
    path = tmp_path / "lab.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        config.load(path)
    assert info.value.exit_code == 2
    assert str(path) in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[vm]\nvcpus = "2"\nmemory_mib = 1\n[bench]\nrepeat = 0\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [line.split(": ", 1)[1].split(":")[0] for line in str(info.value).splitlines()] == [
        "[vm] vcpus", "[vm] memory_mib", "[bench] repeat"]


def test_good_values_keep_the_dataclass_shape(tmp_path):
    (tmp_path / "my.config").write_text("CONFIG_X=y\n")
    (tmp_path / "jobs.fio").write_text("[j]\nrw=write\n")
    path = tmp_path / "lab.toml"
    path.write_text('[lab]\nfragments = ["my.config"]\n[vm]\nboot_timeout_s = 30\n'
                    '[bench]\njobs = [1, 2]\nmodes = ["null"]\njob_file = "jobs.fio"\n')
    cfg = config.load(path)
    assert cfg.fragments == (tmp_path / "my.config",)
    assert isinstance(cfg.vm.boot_timeout_s, float) and cfg.vm.boot_timeout_s == 30.0
    assert cfg.bench.jobs == (1, 2) and cfg.bench.modes == ("null",)
    assert cfg.bench.job_file == str(tmp_path / "jobs.fio")
    assert cfg.bench.repeat == config.BenchConfig().repeat
    with pytest.raises(AttributeError):
        cfg.vm.vcpus = 3  # frozen


def test_values_from_the_command_line_are_checked_the_same_way():
    bench = replace(config.BenchConfig(), jobs=(2, 0))
    with pytest.raises(ConfigError, match=r"command line: \[bench\] jobs\[1\]: must be at least 1"):
        bench.validate("command line")


@pytest.mark.parametrize("text", ['[bench]\njobs = ["4"]', "vm = 5",
                                  "[vm]\nboot_timeout_s = nan"])
def test_the_cli_exits_2_naming_the_key_without_a_traceback(tmp_path, text):
    path = tmp_path / "lab.toml"
    path.write_text(text + "\n")
    out = subprocess.run([sys.executable, "-m", "lab.cli", "build", "--config", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert str(path) in out.stderr and ("[vm]" in out.stderr or "[bench]" in out.stderr)


def test_a_k_expression_matching_nothing_is_refused_before_any_build(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab.cli", "test", "-k", "no-such-case",
                          "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "no case matches 'no-such-case'" in " ".join(out.stderr.split())
    assert not list((tmp_path / "r").glob("build-*.log"))  # nothing was built
