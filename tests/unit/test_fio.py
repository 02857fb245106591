"""fio job rendering and JSON parsing, against real fio 3.33 output."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from lab.bench.fio import MIB, FioJob, parse_fio_json, parse_fio_runs, render_job, render_runs
from lab.errors import ConfigError, ParseError

DATA = Path(__file__).resolve().parents[1] / "data" / "fio"


def options(text: str) -> dict[str, str]:
    """The key=value lines of a job file, later sections overriding earlier."""
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(";"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def write_side(name: str) -> list[dict]:
    lines = (DATA / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("{"))
    doc = json.loads("\n".join(lines[start:]))
    return [job["write"] for job in doc["jobs"]]


def test_ssf_has_the_original_benchmark_options():
    text = render_job(FioJob("ssf", 8, "/mnt/lab", 64 * MIB))
    opts = options(text)
    assert opts["filename"] == "ssf"
    assert opts["rw"] == "randwrite:256"
    assert opts["rw_sequencer"] == "sequential"
    assert opts["bs"] == "1m"
    assert opts["ioengine"] == "sync"
    assert opts["fallocate"] == "none"
    assert opts["fsync_on_close"] == "1"
    assert opts["group_reporting"] == "1"
    assert opts["numjobs"] == "8"
    assert opts["direct"] == "0"
    assert opts["directory"] == "/mnt/lab"
    # The shared file holds every job's share; each job writes its own share.
    assert opts["size"] == "512m"
    assert opts["io_size"] == "64m"
    assert "time_based" not in opts and "runtime" not in opts
    assert "overwrite" not in opts


def test_ssf_presized_writes_inside_a_truncated_file():
    spec = FioJob("ssf-presized", 4, PurePosixPath("/mnt/lab"), 16 * MIB)
    opts = options(render_job(spec))
    assert opts["create_on_open"] == "0"
    assert opts["file_append"] == "0"
    assert opts["fallocate"] == "none"
    assert "overwrite" not in opts
    assert spec.file_size == 64 * MIB
    assert spec.presize_argv() == ["truncate", "-s", str(64 * MIB), "/mnt/lab/ssf"]
    assert FioJob("ssf", 4, "/mnt/lab", 16 * MIB).presize_argv() == []


def test_fpj_has_one_file_per_job():
    text = render_job(FioJob("fpj", 2, "/mnt/lab", 16 * MIB, runtime_s=30))
    opts = options(text)
    assert "filename" not in opts
    assert opts["rw"] == "write"
    assert opts["bs"] == "1m"
    assert opts["numjobs"] == "2"
    assert opts["size"] == "16m"
    assert opts["group_reporting"] == "1"
    assert opts["ioengine"] == "sync"
    assert opts["time_based"] == "1"
    assert opts["runtime"] == "30"


def test_extra_overrides_and_adds():
    spec = FioJob("ssf", 2, "/d", 4 * MIB, extra=(("bs", "4k"), ("iodepth", "4"), ("verify", "")))
    text = render_job(spec)
    opts = options(text)
    assert opts["bs"] == "4k"
    assert text.count("\nbs=") == 1
    assert opts["iodepth"] == "4"
    assert "\nverify\n" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workload": "nope"},
        {"numjobs": 0},
        {"size_per_job": 1000},
        {"runtime_s": 0},
    ],
)
def test_bad_specs_are_config_errors(kwargs):
    args = {"workload": "ssf", "numjobs": 1, "directory": "/d", "size_per_job": MIB} | kwargs
    with pytest.raises(ConfigError):
        FioJob(**args)


@pytest.mark.parametrize(
    ("name", "numjobs"),
    [("ssf-4.json", 4), ("fpj-2.json", 2), ("ssf-presized-4.json", 4)],
)
def test_parse_real_output(name, numjobs):
    result = parse_fio_json((DATA / name).read_text())
    writes = write_side(name)
    assert len(writes) == 1  # group_reporting folds the clones into one entry
    w = writes[0]
    assert result.bw_bytes == w["bw_bytes"]
    assert result.iops == w["iops"]
    assert result.io_bytes == w["io_bytes"] == numjobs * 16 * MIB
    assert result.runtime_ms == w["runtime"]
    assert result.clat_mean_ns == w["clat_ns"]["mean"]
    assert result.clat_p99_ns == w["clat_ns"]["percentile"]["99.000000"]
    assert result.lat_mean_ns == w["lat_ns"]["mean"]
    assert result.jobs == numjobs
    assert result.entries == 1
    assert result.error == 0
    assert result.fio_version == "fio-3.33"
    assert result.bw_mib == pytest.approx(w["bw_bytes"] / MIB)


def test_parse_skips_leading_warnings():
    text = (DATA / "ssf-2-warning.txt").read_text()
    assert not text.startswith("{")
    result = parse_fio_json(text)
    w = write_side("ssf-2-warning.txt")[0]
    assert result.bw_bytes == w["bw_bytes"]
    assert result.jobs == 2


def test_parse_sums_job_entries_without_group_reporting():
    doc = json.loads((DATA / "fpj-2.json").read_text())
    job = doc["jobs"][0]
    doc["global options"]["group_reporting"] = "0"
    job["job options"]["numjobs"] = "1"
    doc["jobs"] = [job, job]
    result = parse_fio_json("noise\n" + json.dumps(doc) + "\ntrailing noise\n")
    assert result.bw_bytes == 2 * job["write"]["bw_bytes"]
    assert result.io_bytes == 2 * job["write"]["io_bytes"]
    assert result.runtime_ms == job["write"]["runtime"]
    assert result.jobs == 2 and result.entries == 2
    assert result.clat_mean_ns == pytest.approx(job["write"]["clat_ns"]["mean"])


def test_missing_percentiles_give_none():
    doc = json.loads((DATA / "fpj-2.json").read_text())
    del doc["jobs"][0]["write"]["clat_ns"]["percentile"]
    assert parse_fio_json(json.dumps(doc)).clat_p99_ns is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fio: pid=123, err=5/file:io_u.c:1845, func=io_u error, error=Input/output error\n",
        "{ not json",
        '{"jobs": []}',
        '{"jobs": [{"jobname": "x"}]}',
        '{"jobs": [{"write": {"bw_bytes": "fast", "iops": 1, "io_bytes": 1, "runtime": 1}}]}',
        "[1, 2]\n",
    ],
)
def test_garbage_is_a_parse_error(text):
    with pytest.raises(ParseError):
        parse_fio_json(text)


def test_a_points_repeats_render_as_stonewalled_runs_in_their_own_folders():
    spec = FioJob("ssf-presized", 4, "/mnt/bench/run1", 16 * MIB, runtime_s=1)
    folders = ["/mnt/bench/run1", "/mnt/bench/run2", "/mnt/bench/run3"]
    text = render_runs(spec, folders)
    sections = text.split("\n\n")
    # Each run names its folder and then the file: fio would put a [global]
    # filename in its working directory, whatever a job's directory says.
    assert "directory=" not in sections[0] and "filename=" not in sections[0]
    assert [s.splitlines()[0] for s in sections[1:]] == ["[write-1]", "[write-2]", "[write-3]"]
    for i, (section, folder) in enumerate(zip(sections[1:], folders, strict=True)):
        assert section.splitlines()[1:3] == [f"directory={folder}", "filename=ssf"]
        assert "numjobs=4" in section
        assert ("stonewall" in section.splitlines()) == (i > 0)
    one = options(render_job(spec))
    assert {k: v for k, v in options(text).items() if k != "directory"} == {
        k: v for k, v in one.items() if k != "directory"}


def test_parse_runs_gives_one_result_per_stonewalled_run():
    # Real fio 3.33 output of such a job file: 3 runs of 4 jobs, on the host's disk.
    text = (DATA / "ssf-presized-4-x3-runs.json").read_text()
    runs = parse_fio_runs(text)
    assert len(runs) == 3 and all(r.jobs == 4 and r.entries == 1 for r in runs)
    assert len({r.bw_bytes for r in runs}) == 3
    assert sum(r.io_bytes for r in runs) == parse_fio_json(text).io_bytes
    with pytest.raises(ParseError, match="groupid"):
        parse_fio_runs(json.dumps({"jobs": [{"write": {}}]}))
