"""fio job files in, fio JSON out; no processes are started here.

The job templates follow the benchmark in the FOPEN_PARALLEL_DIRECT_WRITES
cover letter (Dharmendra Singh, May 2022): a single shared file written by N
jobs ("ssf") and one file per job ("fpj"), 1 MiB blocks, sync engine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lab.errors import ConfigError, ParseError

MIB = 1 << 20
WORKLOADS = ("ssf", "ssf-presized", "fpj")
SHARED_FILE = "ssf"


@dataclass(frozen=True)
class FioJob:
    """One fio run in the guest.

    `size_per_job` is what each job writes. For the shared-file workloads the
    file is `numjobs * size_per_job` long, so the total I/O matches fpj's for
    the same arguments. `directory` is a guest path. `extra` holds
    (option, value) pairs that replace a template option of the same name or
    are added to the job section; an empty value renders a bare flag.
    """

    workload: str
    numjobs: int
    directory: PurePosixPath | str
    size_per_job: int
    runtime_s: int | None = None
    bs: int = MIB
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ConfigError(
                f"unknown fio workload {self.workload!r} (known: {', '.join(WORKLOADS)})"
            )
        if self.numjobs < 1:
            raise ConfigError(f"numjobs must be >= 1, not {self.numjobs}")
        if self.bs < 1 or self.size_per_job < self.bs:
            raise ConfigError(
                f"size_per_job ({self.size_per_job}) must be at least one block ({self.bs})"
            )
        if self.runtime_s is not None and self.runtime_s < 1:
            raise ConfigError(f"runtime_s must be >= 1 or None, not {self.runtime_s}")

    @property
    def shared(self) -> bool:
        return self.workload != "fpj"

    @property
    def file_size(self) -> int:
        """Length of the shared file (shared workloads) or of each job's file (fpj)."""
        return self.size_per_job * self.numjobs if self.shared else self.size_per_job

    @property
    def shared_file(self) -> PurePosixPath | None:
        """Guest path of the shared file, None for fpj."""
        return PurePosixPath(self.directory) / SHARED_FILE if self.shared else None

    def presize_argv(self) -> list[str]:
        """Guest command that pre-sizes the file for ssf-presized ([] otherwise).

        truncate(1) becomes a FUSE SETATTR, so no data goes through the
        server's WRITE path before the measurement.
        """
        if self.workload != "ssf-presized":
            return []
        return ["truncate", "-s", str(self.file_size), str(self.shared_file)]


def _size(n: int) -> str:
    # fio's default kb_base=1024 reads "1m" as 1 MiB.
    for suffix, unit in (("g", 1 << 30), ("m", MIB), ("k", 1 << 10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _sections(spec: FioJob) -> tuple[dict[str, str], str, dict[str, str]]:
    common = {
        "directory": str(spec.directory),
        "bs": _size(spec.bs),
        "ioengine": "sync",
        # The FUSE server replies FOPEN_DIRECT_IO, so the kernel takes the
        # direct-write path (the one the patch changes) even for buffered I/O.
        "direct": "0",
        "group_reporting": "1",
    }
    if spec.runtime_s is not None:
        common |= {"time_based": "1", "runtime": str(spec.runtime_s)}
    if not spec.shared:
        glob = common | {"size": _size(spec.size_per_job)}
        job = {"rw": "write", "numjobs": str(spec.numjobs)}
        return glob, "sequential-write", job
    glob = {
        **common,
        "filename": SHARED_FILE,
        "size": _size(spec.file_size),
        "io_size": _size(spec.size_per_job),
        # No preallocation: ssf starts empty, so its first writes extend it.
        "fallocate": "none",
    }
    if spec.workload == "ssf-presized":
        # The caller truncates the file to `size` first; fio only re-creates
        # (unlinks) a file that is shorter than `size`, and never shrinks one.
        glob |= {"create_on_open": "0", "file_append": "0"}
    job = {
        "rw": "randwrite:256",
        "rw_sequencer": "sequential",
        "fsync_on_close": "1",
        "numjobs": str(spec.numjobs),
    }
    return glob, "write", job


def render_job(spec: FioJob) -> str:
    """The ini job file for `spec`.

    ssf: N jobs share one file with `fallocate=none`, so it starts empty and
    the first writes extend it; extending writes take the exclusive inode
    lock even on a patched kernel. ssf-presized renders the same job, but the
    caller must pre-size the file first (see `FioJob.presize_argv`); then
    every write lands inside the existing size. `overwrite=1` is deliberately
    not used: fio would lay the file out with writes through FUSE.
    fpj: one file per job, named by fio, sequential writes.
    """
    glob, name, job = _with_extra(spec)
    out = [
        f"; kernel-lab {spec.workload}: numjobs={spec.numjobs}",
        "[global]",
        *_lines(glob),
        "",
        f"[{name}]",
        *_lines(job),
    ]
    return "\n".join(out) + "\n"


def render_runs(spec: FioJob, directories: Sequence[str]) -> str:
    """One job file that runs `spec` once in each directory, one run after the
    other (`stonewall`: each run is its own reporting group, parsed by
    `parse_fio_runs`). One fio process then serves all the repeats of a point:
    under TCG fio's own start and exit cost about a second."""
    glob, name, job = _with_extra(spec)
    # Each run names its own folder, and the shared file after it: fio places
    # a `filename` given in [global] before any job's `directory` is known.
    glob.pop("directory", None)
    where = {"filename": glob.pop("filename")} if "filename" in glob else {}
    out = [f"; kernel-lab {spec.workload}: numjobs={spec.numjobs}, {len(directories)} runs",
           "[global]", *_lines(glob)]
    for i, directory in enumerate(directories):
        out += ["", f"[{name}-{i + 1}]", f"directory={directory}", *_lines(where),
                *_lines(job), *(["stonewall"] if i else [])]
    return "\n".join(out) + "\n"


def _with_extra(spec: FioJob) -> tuple[dict[str, str], str, dict[str, str]]:
    glob, name, job = _sections(spec)
    for key, value in spec.extra:
        (glob if key in glob else job)[key] = value
    return glob, name, job


def _lines(options: dict[str, str]) -> list[str]:
    return [f"{k}={v}" if v != "" else k for k, v in options.items()]


@dataclass(frozen=True)
class FioResult:
    """The write side of one fio run, summed over its job entries.

    Latencies are in ns and None when fio did not report them. With several
    job entries the means are weighted by I/O count and p99 is the worst
    entry's p99 (percentiles cannot be merged exactly).
    """

    bw_bytes: float
    iops: float
    io_bytes: int
    runtime_ms: int
    clat_mean_ns: float | None
    clat_p99_ns: float | None
    lat_mean_ns: float | None
    lat_p99_ns: float | None
    jobs: int
    entries: int
    error: int
    fio_version: str

    @property
    def bw_mib(self) -> float:
        return self.bw_bytes / MIB


def _json_start(text: str) -> int:
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("{"):
            return offset + (len(line) - len(line.lstrip()))
        offset += len(line)
    raise ParseError(f"no JSON object in fio output: {_head(text)!r}", excerpt=_head(text))


def _head(text: str, limit: int = 200) -> str:
    return text.strip()[:limit] or "<empty>"


def _number(d: dict[str, Any], key: str, where: str) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParseError(f"fio JSON: {where}.{key} is {value!r}, expected a number")
    return float(value)


def _p99(stats: dict[str, Any]) -> float | None:
    pct = stats.get("percentile")
    if not isinstance(pct, dict):
        return None
    for key, value in pct.items():
        try:
            if abs(float(key) - 99.0) < 1e-9:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _latency(entries: list[tuple[dict[str, Any], float]]) -> tuple[float | None, float | None]:
    """Weighted mean and worst p99 over (stats, ios) pairs that have samples."""
    usable = [(s, n) for s, n in entries if isinstance(s, dict) and n > 0 and "mean" in s]
    if not usable:
        return None, None
    total = sum(n for _, n in usable)
    mean = sum(float(s["mean"]) * n for s, n in usable) / total
    p99s = [p for s, _ in usable if (p := _p99(s)) is not None]
    return mean, (max(p99s) if p99s else None)


def _enabled(value: Any) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "no", "off")


def parse_fio_json(text: str) -> FioResult:
    """Parse `fio --output-format=json` output (fio 3.33).

    Lines before the first line that starts with '{' (warnings fio prints
    before its JSON) and anything after the object are ignored.
    """
    doc = _document(text)
    return _summed(doc["jobs"], doc.get("global options") or {}, str(doc.get("fio version", "")))


def _document(text: str) -> dict[str, Any]:
    """fio's JSON object, with a non-empty `jobs` list."""
    start = _json_start(text)
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise ParseError(f"fio output is not valid JSON: {e}", excerpt=_head(text[start:])) from e
    if not isinstance(doc, dict):
        raise ParseError("fio JSON: top level is not an object")
    jobs = doc.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ParseError("fio JSON has no 'jobs' entries", excerpt=_head(text[start:]))
    return doc


def parse_fio_runs(text: str) -> list[FioResult]:
    """Parse the output of a `render_runs` job file: one result per run
    (reporting group), in the order they ran."""
    doc = _document(text)
    runs: dict[Any, list[dict[str, Any]]] = {}
    for i, job in enumerate(doc["jobs"]):
        if not isinstance(job, dict) or "groupid" not in job:
            raise ParseError(f"fio JSON: jobs[{i}] has no 'groupid'")
        runs.setdefault(job["groupid"], []).append(job)
    version = str(doc.get("fio version", ""))
    return [_summed(jobs, doc.get("global options") or {}, version) for jobs in runs.values()]


def _summed(jobs: list[Any], global_opts: dict[str, Any], version: str) -> FioResult:
    bw = iops = 0.0
    io_bytes = runtime = threads = error = 0
    clat: list[tuple[dict[str, Any], float]] = []
    lat: list[tuple[dict[str, Any], float]] = []
    for i, job in enumerate(jobs):
        where = f"jobs[{i}]"
        if not isinstance(job, dict) or not isinstance(job.get("write"), dict):
            raise ParseError(f"fio JSON: {where} has no 'write' object")
        w = job["write"]
        bw += _number(w, "bw_bytes", f"{where}.write")
        iops += _number(w, "iops", f"{where}.write")
        io_bytes += int(_number(w, "io_bytes", f"{where}.write"))
        # Jobs run concurrently, so the run lasted as long as the slowest.
        runtime = max(runtime, int(_number(w, "runtime", f"{where}.write")))
        ios = float(w.get("total_ios", 0) or 0)
        clat.append((w.get("clat_ns", {}), ios))
        lat.append((w.get("lat_ns", {}), ios))
        if not error and job.get("error"):
            error = int(job["error"])
        # A group-reported entry stands for all its numjobs clones.
        opts = {**global_opts, **(job.get("job options") or {})}
        grouped = _enabled(opts.get("group_reporting", "0"))
        try:
            threads += int(opts.get("numjobs", 1)) if grouped else 1
        except ValueError as e:
            raise ParseError(f"fio JSON: {where} numjobs is {opts.get('numjobs')!r}") from e
    clat_mean, clat_p99 = _latency(clat)
    lat_mean, lat_p99 = _latency(lat)
    return FioResult(
        bw_bytes=bw,
        iops=iops,
        io_bytes=io_bytes,
        runtime_ms=runtime,
        clat_mean_ns=clat_mean,
        clat_p99_ns=clat_p99,
        lat_mean_ns=lat_mean,
        lat_p99_ns=lat_p99,
        jobs=threads,
        entries=len(jobs),
        error=error,
        fio_version=version,
    )
