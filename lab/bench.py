"""The benchmark: fio over labfs, swept over workloads, numjobs and server modes.

Two server modes, both discarding data as the original benchmark did:
`null` (no delay: CPU-bound, as in the cover letter) and `latency` (a fixed
WRITE delay standing for a network or slow backend, where a kernel that lets
N writers in at once should approach N times the bandwidth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.config import BenchConfig
from lab.fio import MIB, FioJob
from lab.guest import Guest
from lab.results import BenchSample
from lab.workloads import FuseMount, ServerOptions, run_fio, run_fio_file


@dataclass(frozen=True)
class Point:
    """One fio run: the unit of work that shards are made of."""

    variant: str
    mode: str
    workload: str
    numjobs: int
    repeat: int

    @property
    def key(self) -> str:
        return f"bench/{self.variant}/{self.mode}/{self.workload}/{self.numjobs}/{self.repeat}"


def plan(cfg: BenchConfig, variants: Sequence[str]) -> list[Point]:
    """Every run, in the order they execute: variants interleaved per point so
    slow drift of the host (thermal, other load) hits both sides alike."""
    # A user's job file sets its own numjobs: one point per mode and repeat.
    workloads, jobs = (("custom",), (0,)) if cfg.job_file else (cfg.workloads, cfg.jobs)
    return [
        Point(v, mode, workload, n, r)
        for mode in cfg.modes
        for workload in workloads
        for n in jobs
        for r in range(cfg.repeat)
        for v in variants
    ]


def server_options(cfg: BenchConfig, mode: str) -> ServerOptions:
    return ServerOptions(null_writes=True,
                         delay_write_us=cfg.write_delay_us if mode == "latency" else 0)


def run_point(guest: Guest, cfg: BenchConfig, point: Point) -> BenchSample:
    options = server_options(cfg, point.mode)
    if point.workload == "custom":
        return _run_custom(guest, cfg, point, options)
    with FuseMount(guest, options, name="bench") as mount:
        job = FioJob(
            workload=point.workload,
            numjobs=point.numjobs,
            directory=mount.path,
            size_per_job=cfg.size_mib * MIB,
            runtime_s=cfg.runtime_s,
        )
        result = run_fio(guest, job, timeout=cfg.runtime_s * 10 + 120)
    files = mount.stats.get("files", {})
    if job.shared:
        inflight = files.get("ssf", {}).get("max_inflight", 0)
        extending = files.get("ssf", {}).get("extending_writes", 0)
    else:
        inflight = max((f.get("max_inflight", 0) for f in files.values()), default=0)
        extending = sum(f.get("extending_writes", 0) for f in files.values())
    return BenchSample(
        variant=point.variant,
        workload=point.workload,
        mode=point.mode,
        numjobs=point.numjobs,
        repeat=point.repeat,
        bw_bytes=result.bw_bytes,
        iops=result.iops,
        max_inflight=inflight,
        extending_writes=extending,
        write_delay_us=options.delay_write_us,
    )


def _run_custom(guest: Guest, cfg: BenchConfig, point: Point, options: ServerOptions
                ) -> BenchSample:
    with FuseMount(guest, options, name="bench") as mount:
        result = run_fio_file(guest, Path(cfg.job_file), mount.path)
    files = mount.stats.get("files", {}).values()
    return BenchSample(
        variant=point.variant, workload=Path(cfg.job_file).stem, mode=point.mode,
        numjobs=result.jobs, repeat=point.repeat, bw_bytes=result.bw_bytes, iops=result.iops,
        max_inflight=max((f.get("max_inflight", 0) for f in files), default=0),
        extending_writes=sum(f.get("extending_writes", 0) for f in files),
        write_delay_us=options.delay_write_us)


def run_plan(
    guests: dict[str, Guest],
    cfg: BenchConfig,
    points: Sequence[Point],
    on_sample: Callable[[int, Point, BenchSample], None] | None = None,
) -> list[BenchSample]:
    samples = []
    for i, point in enumerate(points):
        sample = run_point(guests[point.variant], cfg, point)
        samples.append(sample)
        if on_sample:
            on_sample(i, point, sample)
    return samples
