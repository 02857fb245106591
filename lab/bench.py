"""The benchmark: fio over labfs, swept over workloads, numjobs and server modes.

Two server modes, both discarding data as the original benchmark did:
`null` (no delay: CPU-bound, as in the cover letter) and `latency` (a fixed
WRITE delay standing for a network or slow backend, where a kernel that lets
N writers in at once should approach N times the bandwidth).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import jobfile, proc
from lab.config import BenchConfig
from lab.errors import ConfigError, GuestError, ToolMissing
from lab.fio import MIB, FioJob, FioResult, parse_fio_json
from lab.guest import Guest
from lab.results import BenchSample
from lab.workloads import REMOTE, FuseMount, ServerOptions, run_fio

MOUNT_NAME = "bench"
MOUNT = f"/mnt/{MOUNT_NAME}"  # where FuseMount(name=MOUNT_NAME) mounts labfs
JOB_FILE_TIMEOUT_S = 600  # a user's file sets its own runtime; KVM-scale


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


def workloads(cfg: BenchConfig) -> tuple[str, ...]:
    """The built-in workloads, or a user's job file named by its stem."""
    return (Path(cfg.job_file).stem,) if cfg.job_file else cfg.workloads


def plan(cfg: BenchConfig, variants: Sequence[str]) -> list[Point]:
    """Every run, in the order they execute: variants interleaved per point so
    slow drift of the host (thermal, other load) hits both sides alike. Each
    mode sweeps its own widths (BenchConfig.jobs_for); a job file is swept
    like a built-in workload, its numjobs set per point."""
    return [
        Point(v, mode, workload, n, r)
        for mode in cfg.modes
        for workload in workloads(cfg)
        for n in cfg.jobs_for(mode)
        for r in range(cfg.repeat)
        for v in variants
    ]


def fio_seconds(cfg: BenchConfig, n_variants: int = 2) -> int:
    """fio's own time for the whole plan (points x runtime), boots and set-up aside."""
    return len(plan(cfg, [str(i) for i in range(n_variants)])) * cfg.runtime_s


def server_options(cfg: BenchConfig, mode: str) -> ServerOptions:
    return ServerOptions(null_writes=True,
                         delay_write_us=cfg.write_delay_us if mode == "latency" else 0)


# --- a user's job file --------------------------------------------------------------


def load_job_file(cfg: BenchConfig) -> jobfile.JobFile:
    path = Path(cfg.job_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--job-file {path}: {exc.strerror}") from exc
    return jobfile.parse(text, str(path))


def check(cfg: BenchConfig, log_dir: Path | None = None) -> None:
    """Refuse a job file fio would refuse, before anything is built.

    Our parser checks the file's shape; fio's own --parse-only (on the host)
    checks every option, in the copy the guest would run.
    """
    if not cfg.job_file:
        return
    job = load_job_file(cfg)
    fio = shutil.which("fio")
    if fio is None:
        raise ToolMissing("fio is not installed on this host: `sudo apt-get install fio` "
                          "(a job file is checked with fio --parse-only before any build)")
    widths = sorted({n for mode in cfg.modes for n in cfg.jobs_for(mode)})
    with tempfile.TemporaryDirectory(prefix="kernel-lab-jobfile-") as tmp:
        copy = Path(tmp) / Path(cfg.job_file).name
        copy.write_text(jobfile.for_point(job, MOUNT, widths[-1]).job.render())
        result = proc.run([fio, "--parse-only", copy], timeout=60, check=False,
                          log_path=log_dir / "fio-parse-only.log" if log_dir else None)
    if not result.ok:
        # fio's verdict ("failed parsing rw=...", "Bad option") comes on stderr,
        # after a long list of valid values on stdout.
        said = [line for line in (result.stderr + "\n" + result.stdout).splitlines()
                if line.startswith("fio:") or "Bad option" in line]
        raise ConfigError(f"--job-file {cfg.job_file}: fio --parse-only refused it:\n"
                          + ("\n".join(said) or result.tail(12)))


def notes(cfg: BenchConfig) -> tuple[str, ...]:
    """What the report should say about the plan: widths per mode, a job file's changes."""
    widths = {mode: cfg.jobs_for(mode) for mode in cfg.modes}
    out = []
    if "null" in widths and max(widths["null"]) < max(max(w) for w in widths.values()):
        out.append(f"null mode stops at {max(widths['null'])} jobs: with no WRITE delay the "
                   "fio jobs, the kernel and the server share the guest's vCPUs, so more "
                   "writers measure the CPUs, not the lock; latency mode (the server sets "
                   "the pace) covers the cover letter's whole range")
    return (*out, *job_file_notes(cfg))


def job_file_notes(cfg: BenchConfig) -> tuple[str, ...]:
    """What the lab changed in the user's job file, for the report."""
    if not cfg.job_file:
        return ()
    job = load_job_file(cfg)
    moved = jobfile.redirect(job, MOUNT)
    _, numjobs = jobfile.with_numjobs(job, 1)
    widths = {mode: ", ".join(map(str, cfg.jobs_for(mode))) for mode in cfg.modes}
    notes = [f"job file {cfg.job_file} (rows named {workloads(cfg)[0]!r}) ran on the FUSE "
             f"mount {MOUNT}, with fio's working directory there"]
    if moved.changes:
        notes.append("paths moved onto the mount: "
                     + "; ".join(c.describe() for c in moved.changes))
    set_by_file = [c.describe() for c in numjobs if c.old is not None]
    notes.append("numjobs set per row by the sweep ("
                 + "; ".join(f"{m}: {w}" for m, w in widths.items()) + ")"
                 + (f", replacing the file's {', '.join(set_by_file)}" if set_by_file else ""))
    return tuple(notes)


def run_job_file(guest: Guest, job: jobfile.JobFile, numjobs: int, mount: str,
                 timeout: float = JOB_FILE_TIMEOUT_S) -> FioResult:
    """The user's job, redirected onto `mount` and swept to `numjobs`, run in the guest."""
    point = jobfile.for_point(job, mount, numjobs)
    header = (f"kernel-lab: {job.source} at numjobs={numjobs}, run on {mount}",
              *(c.describe() for c in point.changes))
    with tempfile.TemporaryDirectory(prefix="kernel-lab-jobfile-") as tmp:
        copy = Path(tmp) / "user.fio"
        copy.write_text(point.job.render(header))
        guest.put(copy, f"{REMOTE}/user.fio")
    if point.folders:
        guest.run(["mkdir", "-p", *point.folders], check=True)
    result = guest.run(f"cd {shlex.quote(mount)} && fio --output-format=json {REMOTE}/user.fio",
                       timeout=timeout)
    if not result.ok:
        raise GuestError(f"fio failed on {job.source} at numjobs={numjobs}",
                         excerpt=result.tail())
    return parse_fio_json(result.stdout)


# --- running points ---------------------------------------------------------------


def run_point(guest: Guest, cfg: BenchConfig, point: Point,
              job: jobfile.JobFile | None = None) -> BenchSample:
    options = server_options(cfg, point.mode)
    with FuseMount(guest, options, name=MOUNT_NAME) as mount:
        if job is not None:
            result = run_job_file(guest, job, point.numjobs, mount.path)
        else:
            spec = FioJob(
                workload=point.workload,
                numjobs=point.numjobs,
                directory=mount.path,
                size_per_job=cfg.size_mib * MIB,
                runtime_s=cfg.runtime_s,
            )
            result = run_fio(guest, spec, timeout=cfg.runtime_s * 10 + 120)
    assert mount.stats is not None  # read at unmount
    if job is None and spec.shared:
        # Only the shared file: fio's own files (none here) must not count.
        files = [mount.file_stats(str(spec.shared_file.name))]
    else:
        files = list(mount.stats.files.values())
    return BenchSample(
        variant=point.variant,
        workload=point.workload,
        mode=point.mode,
        numjobs=point.numjobs,
        repeat=point.repeat,
        bw_bytes=result.bw_bytes,
        iops=result.iops,
        max_inflight=max((f.max_inflight for f in files), default=0),
        extending_writes=sum(f.extending_writes for f in files),
        write_delay_us=options.delay_write_us,
    )


def run_plan(
    guests: dict[str, Guest],
    cfg: BenchConfig,
    points: Sequence[Point],
    on_sample: Callable[[int, Point, BenchSample], None] | None = None,
) -> list[BenchSample]:
    job = load_job_file(cfg) if cfg.job_file else None
    samples = []
    for i, point in enumerate(points):
        sample = run_point(guests[point.variant], cfg, point, job)
        samples.append(sample)
        if on_sample:
            on_sample(i, point, sample)
    return samples
