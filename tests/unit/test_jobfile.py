"""A user's fio job file: parsing, moving its paths onto the mount, the numjobs
sweep, the plan, and the host-side check with the real fio (--parse-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.bench import jobfile, sweep
from lab.config import JOBS_BY_MODE, BenchConfig
from lab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SSF = REPO / "examples" / "ssf.fio"
FPJ = REPO / "examples" / "fpj.fio"
MOUNT = "/mnt/bench"
SEED = REPO.parent / "shared" / "seed" / "000_cea0b288e42422fd.txt"

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (make setup)")


def options(job: jobfile.JobFile, section: str) -> dict[str, str | None]:
    (sec,) = [s for s in job.sections if s.name == section]
    return {o.key: o.value for o in sec.options}


def test_examples_are_the_cover_letters_jobs_but_for_size_and_runtime():
    ssf = jobfile.parse(SSF.read_text(), "ssf.fio")
    assert [s.name for s in ssf.sections] == ["global", "write"]
    assert options(ssf, "global") == {
        "directory": "/tmp/dest", "filename": "ssf", "size": "64m", "blocksize": "1m",
        "ioengine": "sync", "group_reporting": "1", "fallocate": "none", "runtime": "2",
        "stonewall": None}
    assert options(ssf, "write") == {
        "rw": "randwrite:256", "rw_sequencer": "sequential", "fsync_on_close": "1"}
    fpj = jobfile.parse(FPJ.read_text(), "fpj.fio")
    assert options(fpj, "sequential-write") == {
        "rw": "write", "size": "64M", "directory": "/tmp/dest/", "group_reporting": None,
        "name": "sequential-write-direct", "bs": "1M", "runtime": "2"}


@pytest.mark.skipif(not SEED.is_file(), reason="the seed is not beside this checkout")
def test_examples_match_the_seed_word_for_word():
    """Every option of the seed's job files is in ours, in order, except the two shrunk."""
    seed = SEED.read_text()
    for path, start, end, shrunk in (
        (SSF, "Job file for SSF:", "Job file for file-per-job:", {"size=100g", "runtime=60"}),
        (FPJ, "Job file for file-per-job:", "Results:", {"size=100G", "runtime=60"}),
    ):
        words = seed[seed.index(start) + len(start):seed.index(end)].split()
        words = [w for w in words if w not in shrunk]
        ours = [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.startswith(";")]
        ours = [w for w in ours if not w.startswith(("size=", "runtime="))]
        assert ours == words, path.name


def test_parse_errors_name_the_file_and_line():
    with pytest.raises(ConfigError, match=r"x.fio:1: option 'rw=write' before any \[section\]"):
        jobfile.parse("rw=write\n[a]\n", "x.fio")
    with pytest.raises(ConfigError, match=r"x.fio:3: `include`"):
        jobfile.parse("[a]\nrw=write\ninclude other.fio\n", "x.fio")
    with pytest.raises(ConfigError, match="x.fio: no job section"):
        jobfile.parse("; nothing\n[global]\nbs=1m\n", "x.fio")
    with pytest.raises(ConfigError, match=r"x.fio:2: not an fio option"):
        jobfile.parse("[a]\nrw write=1\n", "x.fio")


def test_paths_outside_the_mount_are_mirrored_under_it():
    text = ("[global]\ndirectory=/tmp/dest\n[a]\nfilename=/data/one:/data/two\n"
            "[b]\ndirectory=/mnt/bench/kept\nopendir=sub\n[c]\nfilename=rel/file\n"
            "filename_format=/scratch/$jobname.$filenum\n")
    moved = jobfile.redirect(jobfile.parse(text, "x.fio"), MOUNT)
    assert options(moved.job, "global")["directory"] == "/mnt/bench/tmp/dest"
    assert options(moved.job, "a")["filename"] == "/mnt/bench/data/one:/mnt/bench/data/two"
    assert options(moved.job, "b") == {"directory": "/mnt/bench/kept", "opendir": "sub"}
    assert options(moved.job, "c")["filename_format"] == "/mnt/bench/scratch/$jobname.$filenum"
    assert [c.describe() for c in moved.changes] == [
        "[global] directory=/tmp/dest -> /mnt/bench/tmp/dest",
        "[a] filename=/data/one:/data/two -> /mnt/bench/data/one:/mnt/bench/data/two",
        "[c] filename_format=/scratch/$jobname.$filenum -> "
        "/mnt/bench/scratch/$jobname.$filenum",
    ]
    # Folders fio needs, relative ones (fio runs in the mount) included.
    assert moved.folders == ("/mnt/bench/tmp/dest", "/mnt/bench/data", "/mnt/bench/kept",
                             "/mnt/bench/sub", "/mnt/bench/rel", "/mnt/bench/scratch")


def test_numjobs_is_set_per_job_and_what_the_file_said_is_recorded():
    job = jobfile.parse("[global]\nnumjobs=4\nbs=1m\n[a]\nrw=write\n[b]\nrw=write\nnumjobs=2\n",
                        "x.fio")
    swept, changes = jobfile.with_numjobs(job, 8)
    assert "numjobs" not in options(swept, "global")
    assert options(swept, "a")["numjobs"] == "8" and options(swept, "b")["numjobs"] == "8"
    assert [c.describe() for c in changes] == [
        "[global] numjobs=4 removed", "[a] numjobs=8 added", "[b] numjobs=2 -> 8"]


def test_the_ssf_example_as_the_guest_runs_it():
    point = jobfile.for_point(jobfile.parse(SSF.read_text(), str(SSF)), MOUNT, 16)
    text = point.job.render(("header line",))
    assert text.startswith("; header line\n\n[global]\ndirectory=/mnt/bench/tmp/dest\n")
    assert "\nstonewall\n" in text and text.endswith("fsync_on_close=1\nnumjobs=16\n")
    assert point.folders == ("/mnt/bench/tmp/dest",)
    assert [c.describe() for c in point.changes] == [
        "[global] directory=/tmp/dest -> /mnt/bench/tmp/dest", "[write] numjobs=16 added"]


def test_plan_sweeps_a_job_file_like_a_workload_with_widths_per_mode():
    cfg = BenchConfig(job_file=str(SSF), modes=("latency", "null"), repeat=1)
    points = sweep.plan(cfg, ["baseline", "patched"])
    rows = sorted({(p.mode, p.workload, p.numjobs) for p in points})
    assert rows == sorted([("latency", "ssf", n) for n in JOBS_BY_MODE["latency"]]
                          + [("null", "ssf", n) for n in JOBS_BY_MODE["null"]])
    assert len(points) == 2 * len(rows)
    # Variants interleave per point.
    assert [p.variant for p in points[:4]] == ["baseline", "patched"] * 2
    given = BenchConfig(job_file=str(FPJ), jobs=(1, 2), modes=("latency", "null"), repeat=1)
    assert {(p.mode, p.workload, p.numjobs) for p in sweep.plan(given, ["b"])} == {
        (m, "fpj", n) for m in ("latency", "null") for n in (1, 2)}


def test_default_experiment_covers_the_cover_letters_range():
    cfg = BenchConfig()
    assert cfg.jobs_for("latency") == (1, 2, 4, 8, 16, 32)
    assert cfg.jobs_for("null") == (1, 2, 4, 8)
    # 3 workloads x (6 + 4) widths x 3 repeats x 2 kernels.
    assert len(sweep.plan(cfg, ["baseline", "patched"])) == 180
    assert sweep.fio_seconds(cfg) == 180 * cfg.runtime_s


def test_notes_say_what_was_changed():
    cfg = BenchConfig(job_file=str(SSF), jobs=(1, 2), modes=("latency",))
    notes = sweep.job_file_notes(cfg)
    assert any("[global] directory=/tmp/dest -> /mnt/bench/runN/tmp/dest" in n for n in notes)
    assert any("numjobs set per row by the sweep (latency: 1, 2)" in n for n in notes)


@needs_fio
@pytest.mark.parametrize("path", [SSF, FPJ], ids=["ssf", "fpj"])
def test_fio_accepts_the_examples_as_rewritten(path: Path):
    sweep.check(BenchConfig(job_file=str(path)))


@needs_fio
def test_fio_refuses_a_bad_option_before_anything_is_built(tmp_path: Path):
    bad = tmp_path / "bad.fio"
    bad.write_text(SSF.read_text().replace("rw=randwrite:256", "rw=randwirte:256"))
    with pytest.raises(ConfigError, match=r"bad.fio: fio --parse-only refused it") as exc:
        sweep.check(BenchConfig(job_file=str(bad)))
    assert "randwirte" in str(exc.value)
    assert exc.value.exit_code == 2


@needs_fio
def test_lab_bench_refuses_a_bad_job_file_before_any_build(tmp_path: Path):
    import subprocess
    import sys

    bad = tmp_path / "bad.fio"
    bad.write_text(SSF.read_text().replace("fsync_on_close=1", "fsync_on_clse=1"))
    out = subprocess.run([sys.executable, "-m", "lab.cli", "bench", "--job-file", str(bad),
                          "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    said = " ".join(out.stderr.split())  # the terminal UI wraps long lines
    assert "fio --parse-only refused it" in said and "fsync_on_clse" in said
    assert "kernel " not in out.stdout + out.stderr  # no build step started


def test_the_plan_notes_say_why_null_mode_is_narrower():
    (note,) = sweep.notes(BenchConfig())
    assert note.startswith("null mode stops at 8 jobs")
    assert sweep.notes(BenchConfig(jobs=(1, 2, 4))) == ()  # the same widths everywhere
