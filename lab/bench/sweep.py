"""The benchmark: fio over labfs, swept over workloads, numjobs and server modes.

Two server modes, both discarding data as the original benchmark did:
`null` (no delay: CPU-bound, as in the cover letter) and `latency` (a fixed
WRITE delay standing for a network or slow backend, where a kernel that lets
N writers in at once should approach N times the bandwidth).
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.bench import jobfile
from lab.bench.fio import MIB, SHARED_FILE, FioJob, parse_fio_json, parse_fio_runs, render_runs
from lab.config import BenchConfig
from lab.errors import ConfigError, GuestError, ParseError, ToolMissing
from lab.guest.records import parse_server_stats
from lab.guest.workloads import REMOTE, FuseMount, ServerOptions, mount_point
from lab.host import proc
from lab.results import BenchSample
from lab.vm.ssh import Guest

MOUNT_NAME = "bench"
MOUNT = mount_point(MOUNT_NAME)
RUN_FOLDER = f"{MOUNT}/runN"  # each run's folder on it, as the report names it
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

    @property
    def setting(self) -> tuple[str, str, str, int]:
        """What the repeats of this point share: one fio process runs them."""
        return self.variant, self.mode, self.workload, self.numjobs


def workloads(cfg: BenchConfig) -> tuple[str, ...]:
    """The built-in workloads, or a user's job file named by its stem."""
    return (Path(cfg.job_file).stem,) if cfg.job_file else cfg.workloads


def plan(cfg: BenchConfig, variants: Sequence[str]) -> list[Point]:
    """Every run, in the order they execute. A point's repeats run back to back
    (one fio process, see `run_points`) and the variants take turns point by
    point, so slow drift of the host (thermal, other load) hits both sides
    alike. Each mode sweeps its own widths (BenchConfig.jobs_for); a job file
    is swept like a built-in workload, its numjobs set per point."""
    return [
        Point(v, mode, workload, n, r)
        for mode in cfg.modes
        for workload in workloads(cfg)
        for n in cfg.jobs_for(mode)
        for v in variants
        for r in range(cfg.repeat)
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
    moved = jobfile.redirect(job, RUN_FOLDER)
    _, numjobs = jobfile.with_numjobs(job, 1)
    widths = {mode: ", ".join(map(str, cfg.jobs_for(mode))) for mode in cfg.modes}
    notes = [f"job file {cfg.job_file} (rows named {workloads(cfg)[0]!r}) ran on the FUSE "
             f"mount {MOUNT}, each fio run in a folder of its own there ({RUN_FOLDER}, "
             "fio's working directory)"]
    if moved.changes:
        notes.append("paths moved into that folder: "
                     + "; ".join(c.describe() for c in moved.changes))
    set_by_file = [c.describe() for c in numjobs if c.old is not None]
    notes.append("numjobs set per row by the sweep ("
                 + "; ".join(f"{m}: {w}" for m, w in widths.items()) + ")"
                 + (f", replacing the file's {', '.join(set_by_file)}" if set_by_file else ""))
    return tuple(notes)


def job_file_script(job: jobfile.JobFile, numjobs: int, folder: str,
                    output: str) -> str:
    """Shell lines that write the user's job, redirected into `folder` and swept
    to `numjobs`, and run fio on it there (JSON to `output`)."""
    point = jobfile.for_point(job, folder, numjobs)
    header = (f"kernel-lab: {job.source} at numjobs={numjobs}, run in {folder}",
              *(c.describe() for c in point.changes))
    path = f"{REMOTE}/user.fio"
    lines = [f"printf '%s' {shlex.quote(point.job.render(header))} > {path}"]
    if point.folders:
        lines.append(shlex.join(["mkdir", "-p", *point.folders]))
    lines.append(f"cd {shlex.quote(folder)}")
    lines.append(shlex.join(["fio", "--output-format=json", f"--output={output}", path]))
    return " && ".join(lines)


# --- running points ---------------------------------------------------------------


class MountPool:
    """labfs mounts kept across fio runs: one per guest while consecutive runs
    ask for the same server options (the plan runs a mode's points in a row).

    Mounting, unmounting and reading the counters cost about ten SSH
    commands per run under TCG. Kept, each run works in a folder of its own
    and reads its counters from a snapshot of the server (SIGUSR1) taken in
    the same SSH command as fio, keeping only that folder's files: the
    server counts per path, so runs never see each other's counters.
    """

    def __init__(self) -> None:
        self._mounts: dict[int, FuseMount] = {}
        self._runs = 0

    def __enter__(self) -> MountPool:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        # After a failure the guest may be stuck on a mount: leave it to the
        # VM's teardown, as FuseMount does.
        if exc_type is None:
            self.close()

    def mount(self, guest: Guest, options: ServerOptions) -> FuseMount:
        have = self._mounts.get(id(guest))
        if have is not None and have.options == options:
            return have
        if have is not None:
            have.unmount()
        mount = FuseMount(guest, options, name=MOUNT_NAME).__enter__()
        self._mounts[id(guest)] = mount
        return mount

    def folder(self) -> str:
        """A fresh folder name (relative to the mount) for the next run."""
        self._runs += 1
        return f"run{self._runs}"

    def close(self) -> None:
        while self._mounts:
            _, mount = self._mounts.popitem()
            mount.unmount()


STATS_MARK = "--- kernel-lab: labfs counters ---"


def run_points(guest: Guest, cfg: BenchConfig, points: Sequence[Point],
               job: jobfile.JobFile | None = None,
               pool: MountPool | None = None) -> list[BenchSample]:
    """Repeats of one point (same variant, mode, workload and numjobs), each in
    a folder of its own on a (kept) labfs mount: one SSH command creates the
    folders, writes the job, runs fio once for all of them (fio.render_runs)
    and snapshots the counters. A user's job file runs one point at a time."""
    if pool is None:
        with MountPool() as own:
            return run_points(guest, cfg, points, job, own)
    first = points[0]
    if job is not None and len(points) > 1:
        raise ValueError("a job file runs one point at a time")
    if any(p.setting != first.setting for p in points):
        raise ValueError("run_points: repeats of one point only")
    options = server_options(cfg, first.mode)
    mount = pool.mount(guest, options)
    names = [pool.folder() for _ in points]
    folders = [f"{mount.path}/{name}" for name in names]
    output = f"/run/lab-fio-{MOUNT_NAME}.json"
    spec = None
    if job is not None:
        run = job_file_script(job, first.numjobs, folders[0], output)
        timeout = JOB_FILE_TIMEOUT_S
    else:
        spec = FioJob(workload=first.workload, numjobs=first.numjobs, directory=folders[0],
                      size_per_job=cfg.size_mib * MIB, runtime_s=cfg.runtime_s)
        run = _runs_script(spec, folders, output)
        timeout = (cfg.runtime_s * 10 + 120) * len(points)
    mark = "/run/lab-stats-mark"
    # The runs' files stay: labfs discards the data (null writes), and the
    # next run works in a new folder.
    script = "\n".join([
        f"mkdir -p {' '.join(shlex.quote(f) for f in folders)} || exit 1",
        f"( {run} ) || {{ rc=$?; cat {output} 2>/dev/null; exit $rc; }}",
        *mount.snapshot_lines(),
        f"echo {shlex.quote(STATS_MARK)} > {mark}",
        f"cat {output} {mark} {shlex.quote(mount.stats_path)}"])
    result = guest.run(script, timeout=timeout)
    fio_json, _, stats_json = result.stdout.partition(f"{STATS_MARK}\n")
    what = job.source if job is not None else f"{first.workload}, {first.numjobs} jobs"
    if not result.ok or not stats_json:
        raise GuestError(f"fio failed ({what})", excerpt=result.tail())
    fios = [parse_fio_json(fio_json)] if job is not None else parse_fio_runs(fio_json)
    if len(fios) != len(points):
        raise ParseError(f"fio ({what}): {len(fios)} results for {len(points)} runs",
                         excerpt=fio_json[-2000:])
    stats = parse_server_stats(stats_json)
    samples = []
    for point, name, fio in zip(points, names, fios, strict=True):
        if spec is not None and spec.shared:
            # Only the shared file: fio's own files (none here) must not count.
            files = [stats.file(f"{name}/{SHARED_FILE}")]
        else:
            files = [c for path, c in stats.files.items() if path.startswith(f"{name}/")]
        samples.append(BenchSample(
            variant=point.variant,
            workload=point.workload,
            mode=point.mode,
            numjobs=point.numjobs,
            repeat=point.repeat,
            bw_bytes=fio.bw_bytes,
            iops=fio.iops,
            max_inflight=max((f.max_inflight for f in files), default=0),
            extending_writes=sum(f.extending_writes for f in files),
            write_delay_us=options.delay_write_us,
            runtime_ms=fio.runtime_ms,
        ))
    return samples


def _runs_script(spec: FioJob, folders: Sequence[str], output: str) -> str:
    """Shell lines that write the job file (printf, a builtin: no copy over
    SFTP), pre-size each run's shared file if the workload asks, and run fio."""
    path = f"{REMOTE}/job.fio"
    lines = [f"printf '%s' {shlex.quote(render_runs(spec, folders))} > {path}"]
    lines += [shlex.join(dataclasses.replace(spec, directory=f).presize_argv())
              for f in folders if spec.presize_argv()]
    lines.append(shlex.join(["fio", "--output-format=json", f"--output={output}", path]))
    return " && ".join(lines)


def batches(points: Sequence[Point], one_by_one: bool = False) -> list[list[Point]]:
    """Consecutive repeats of one point, run by one fio process (one each
    with `one_by_one`: a user's job file)."""
    out: list[list[Point]] = []
    for point in points:
        if not one_by_one and out and out[-1][-1].setting == point.setting:
            out[-1].append(point)
        else:
            out.append([point])
    return out


@dataclass(frozen=True)
class Efficiency:
    """How much of the benchmark's wall time fio spent writing: the rest is
    SSH round trips, fio's own set-up and the counters' snapshots."""

    runs: int
    fio_s: float  # the sum of fio's own runtimes
    wall_s: float  # the benchmark's runs, boots aside

    @property
    def ratio(self) -> float:
        return self.fio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def overhead_per_run_s(self) -> float:
        return max(self.wall_s - self.fio_s, 0.0) / self.runs if self.runs else 0.0

    def line(self) -> str:
        return (f"benchmark efficiency: fio wrote for {self.fio_s:.0f} s of {self.wall_s:.0f} s "
                f"({self.ratio:.0%}), {self.overhead_per_run_s:.2f} s per run beyond fio's own "
                f"({self.runs} runs, boots aside)")


def efficiency(samples: Sequence[BenchSample], wall_s: float) -> Efficiency:
    return Efficiency(runs=len(samples), fio_s=sum(s.runtime_ms for s in samples) / 1000,
                      wall_s=wall_s)


def run_plan(
    guests: dict[str, Guest],
    cfg: BenchConfig,
    points: Sequence[Point],
    on_sample: Callable[[int, Point, BenchSample], None] | None = None,
) -> list[BenchSample]:
    job = load_job_file(cfg) if cfg.job_file else None
    samples: list[BenchSample] = []
    with MountPool() as pool:
        for batch in batches(points, one_by_one=job is not None):
            for point, sample in zip(batch, run_points(guests[batch[0].variant], cfg, batch,
                                                       job, pool), strict=True):
                if on_sample:
                    on_sample(len(samples), point, sample)
                samples.append(sample)
    return samples
