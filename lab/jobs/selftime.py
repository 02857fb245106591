"""`lab selftime`: how long the lab's own developer loop takes on this host.

Each figure is measured `repeat` times and shown as median, p95 (nearest
rank) and range, next to its goal. These are measurements to
report, never limits a test asserts:

- boot: QEMU start to the first SSH command done, on a cached kernel, with
  each boot's phases (lab.machine.BootTimes);
- case: one suite case's wall time in a booted, deployed guest;
- fio: a benchmark run's wall time beyond fio's own runtime, as `lab bench`
  runs them (a point's repeats in one fio process, on a mount made first, as
  a plan's later points find it);
- patch: `lab test --patch P --expect parallel-direct-writes` as a user runs
  it, P being a copy of the series' last version with a comment line edited
  anew before each run (so P's kernel is never cached; everything else is:
  an untimed `lab test --variant baseline` first caches baseline's verdicts).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import pipeline
from lab.bench import sweep
from lab.config import BenchConfig, LabConfig
from lab.errors import ConfigError, LabError
from lab.host import proc
from lab.kernel import features
from lab.kernel.series import load_series
from lab.suite import catalog, checks
from lab.ui import Ui
from lab.vm.machine import Machine
from lab.vm.ssh import Guest

FIGURES = ("boot", "case", "fio", "patch")
DEFAULT_CASE = "parallel-nonextending"
PATCH_TIMEOUT_S = 3 * 3600
# The line of the patch edited before each run: a comment in the added code.
# A line the patch adds inside a C block comment (" * text", no "*/" on it):
# text appended there changes the patch, never the code.
EDITED_LINE = re.compile(r"^\+[ \t]*\*[ \t]+(?:(?!\*/).)+$", re.MULTILINE)


@dataclass(frozen=True)
class Figure:
    name: str
    values: tuple[float, ...]
    goal: str = ""
    note: str = ""
    parts: dict[str, tuple[float, ...]] = field(default_factory=dict)  # medians shown below

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def p95(self) -> float:
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def to_dict(self) -> dict:
        return {"name": self.name, "values": [round(v, 3) for v in self.values],
                "median": round(self.median, 3), "p95": round(self.p95, 3),
                "min": round(min(self.values), 3), "max": round(max(self.values), 3),
                "goal": self.goal, "note": self.note,
                "parts_median": {k: round(statistics.median(v), 3)
                                 for k, v in self.parts.items() if v}}


@dataclass(frozen=True)
class Request:
    figures: tuple[str, ...] = FIGURES
    repeat: int = 3
    variant: str = "baseline"
    case: str = DEFAULT_CASE
    config: Path | None = None  # passed on to the `lab test` runs

    def __post_init__(self) -> None:
        unknown = [f for f in self.figures if f not in FIGURES]
        if unknown or not self.figures:
            raise ConfigError(f"--only {','.join(self.figures)}: figures are "
                              f"{', '.join(FIGURES)}")
        if self.repeat < 1:
            raise ConfigError(f"--repeat must be at least 1, not {self.repeat}")
        catalog.select(self.case)  # an unknown case is bad input, found now


def _series(values: Sequence[dict], key: str) -> tuple[float, ...]:
    return tuple(v[key] for v in values if v.get(key) is not None)


# --- the figures ------------------------------------------------------------------


def boot_figure(cfg: LabConfig, p: pipeline.Prepared, req: Request, out: Path,
                ui: Ui) -> Figure:
    build = p.builds[req.variant]
    walls: list[float] = []
    records: list[dict] = []
    for i in range(req.repeat):
        spec = pipeline.machine_spec(cfg, build, p.image, name=f"selftime-boot{i}")
        with ui.step(f"boot {i + 1}/{req.repeat}", phase="boot") as step:
            start = time.monotonic()
            with Machine(spec, p.accel, log_dir=out, boot_timeout_s=cfg.vm.boot_timeout_s) \
                    as vm, Guest(vm, p.image) as guest:
                guest.run(["true"], check=True)
                walls.append(time.monotonic() - start)
                vm.shutdown(poweroff=guest.poweroff)
            assert vm.boot_times is not None
            records.append(vm.boot_times.to_dict())
            step.done(f"{walls[-1]:.2f}s", detail=vm.boot_times.describe())
    parts = {k: _series(records, f"{k}_s") for k in ("qemu", "kernel", "init", "ssh")}
    return Figure(f"boot to SSH ({cfg.vm.machine}, {build.release})", tuple(walls),
                  goal="p50 <= 2.5 s, p95 <= 3.5 s",
                  note="QEMU start (overlay included) to the first SSH command done",
                  parts=parts)


def guest_figures(cfg: LabConfig, p: pipeline.Prepared, req: Request, out: Path,
                  ui: Ui) -> list[Figure]:
    """The case and fio figures, in one booted guest."""
    figures: list[Figure] = []
    with pipeline.deployed(cfg, p, req.variant, out, ui) as (_vm, guest):
        if "case" in req.figures:
            figures.append(_case_figure(guest, p, req, ui))
        if "fio" in req.figures:
            figures.append(_fio_figure(guest, cfg, req, ui))
    return figures


def _case_figure(guest: Guest, p: pipeline.Prepared, req: Request, ui: Ui) -> Figure:
    case = catalog.select(req.case)[0]  # an exact name is that case alone
    walls: list[float] = []
    note = ""
    for i in range(req.repeat):
        with ui.step(f"case {case.name} {i + 1}/{req.repeat}", phase="cases") as step:
            start = time.monotonic()
            run = checks.run_case(case, guest, req.variant, p.builds[req.variant].features)
            walls.append(time.monotonic() - start)
            step.done("pass" if run.result.passed else "FAIL", detail=run.result.observed)
        if not run.vm_usable:
            note = "stopped early: the kernel failed or reported trouble"
            break
    return Figure(f"case {case.name} (one run)", tuple(walls), note=note)


def _fio_figure(guest: Guest, cfg: LabConfig, req: Request, ui: Ui) -> Figure:
    """What a benchmark run costs beyond fio's runtime, measured as `lab bench`
    runs it: a point's repeats in one fio process on a kept mount."""
    runs = max(cfg.bench.repeat, 1)
    bc = BenchConfig(workloads=("ssf-presized",), jobs=(1,), modes=("latency",), repeat=runs,
                     size_mib=cfg.bench.size_mib, runtime_s=cfg.bench.runtime_s,
                     write_delay_us=cfg.bench.write_delay_us)
    overheads: list[float] = []
    with sweep.MountPool() as pool:
        pool.mount(guest, sweep.server_options(bc, "latency"))
        for i in range(req.repeat):
            points = [sweep.Point(req.variant, "latency", "ssf-presized", 1, r)
                      for r in range(runs)]
            with ui.step(f"fio point {i + 1}/{req.repeat} ({runs} runs)", phase="fio") as step:
                start = time.monotonic()
                samples = sweep.run_points(guest, bc, points, pool=pool)
                overheads.append((time.monotonic() - start) / runs - bc.runtime_s)
                step.done(f"{samples[-1].bw_bytes / 2**20:.1f} MiB/s",
                          detail=f"overhead {overheads[-1]:.2f}s per run")
    return Figure(f"fio run overhead (wall per run - {bc.runtime_s} s runtime)",
                  tuple(overheads), goal="<= 0.5 s",
                  note=f"latency, ssf-presized, 1 job, {runs} runs per fio process; "
                       "mount already made")


def edited_patch(source: Path, dest: Path, mark: str) -> Path:
    """A copy of `source` with one comment line of the added code edited: a new
    patch (a new kernel to build) that behaves exactly as the old one."""
    text = source.read_text()
    edited, count = EDITED_LINE.subn(lambda m: f"{m.group(0)} ({mark})", text, count=1)
    if count != 1:
        raise ConfigError(f"{source}: no comment line to edit for the warm-patch figure")
    dest.write_text(edited)
    return dest


def patch_figure(cfg: LabConfig, req: Request, out: Path, ui: Ui,
                 lab_argv: Callable[[list[str]], list[str]]) -> Figure:
    series = load_series(cfg.series)
    source = series.version(series.newest).patch  # a copy of the newest version, edited
    if not source.is_file():
        raise ConfigError(f"the warm-patch figure edits {source}, which does not exist")
    with ui.step("warm-up: baseline's verdicts cached", phase="cases") as step:
        proc.run(lab_argv(["test", "--variant", "baseline", "--results",
                           str(out / "patch-warmup")]),
                 timeout=PATCH_TIMEOUT_S, log_path=out / "patch-warmup.log", check=False)
        step.done("done")
    walls: list[float] = []
    timings: list[dict] = []
    note = ""
    with tempfile.TemporaryDirectory(prefix="kernel-lab-selftime-") as tmp:
        for i in range(req.repeat):
            mark = f"selftime {os.getpid()}.{i} {time.time():.0f}"
            patch = edited_patch(source, Path(tmp) / "P.patch", mark)
            results = out / f"patch-{i + 1}"
            with ui.step(f"lab test --patch P ({i + 1}/{req.repeat})", phase="cases") as step:
                start = time.monotonic()
                run = proc.run(lab_argv(["test", "--patch", str(patch), "--expect",
                                         features.PARALLEL_DIRECT_WRITES, "--results",
                                         str(results)]),
                               timeout=PATCH_TIMEOUT_S, log_path=out / f"patch-{i + 1}.log",
                               check=False)
                walls.append(time.monotonic() - start)
                step.done(f"exit {run.exit_status}")
            if run.exit_status not in (0, 1):
                raise LabError(f"lab test --patch failed (exit {run.exit_status}); see "
                               f"{out / f'patch-{i + 1}.log'}")
            if run.exit_status == 1:
                note = "a check failed in some run (see its results)"
            saved = results / "results.json"
            if saved.is_file():
                timings.append(json.loads(saved.read_text()).get("timings", {}))
    phases = sorted({k for t in timings for k in t.get("phases_s", {})})
    parts = {k: tuple(t["phases_s"][k] for t in timings if k in t.get("phases_s", {}))
             for k in phases}
    parts["other"] = tuple(t["other_s"] for t in timings if "other_s" in t)
    return Figure("warm lab test --patch P after editing P", tuple(walls), goal="<= 30 s",
                  note=note or "baseline's verdicts cached; P's kernel built incrementally",
                  parts=parts)


# --- the run ----------------------------------------------------------------------


def host_facts(p: pipeline.Prepared | None, cfg: LabConfig) -> dict:
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(v, 2) for v in load],
        "accel": f"{p.accel.name} ({p.accel.reason})" if p else "",
        "machine": cfg.vm.machine,
    }


def run(cfg: LabConfig, req: Request, out: Path, ui: Ui,
        lab_argv: Callable[[list[str]], list[str]] | None = None) -> dict:
    """Measure the requested figures; write selftime.json and selftime.txt."""
    lab_argv = lab_argv or _lab_argv(req.config)
    facts_before = host_facts(None, cfg)
    figures: list[Figure] = []
    p = None
    if any(f in req.figures for f in ("boot", "case", "fio")):
        p = pipeline.prepare(cfg, pipeline.VariantRequest(names=(req.variant,)), out, ui)
        if "boot" in req.figures:
            figures.append(boot_figure(cfg, p, req, out, ui))
        if "case" in req.figures or "fio" in req.figures:
            figures += guest_figures(cfg, p, req, out, ui)
    if "patch" in req.figures:
        figures.append(patch_figure(cfg, req, out, ui, lab_argv))
    facts = {**host_facts(p, cfg), "load_avg_at_start": facts_before["load_avg_1_5_15"]}
    report = {"host": facts, "repeat": req.repeat,
              "figures": [f.to_dict() for f in figures],
              "timings": ui.phases.to_dict()}
    (out / "selftime.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "selftime.txt").write_text(render(report) + "\n")
    return report


def _lab_argv(config: Path | None) -> Callable[[list[str]], list[str]]:
    def argv(args: list[str]) -> list[str]:
        extra = ["--config", str(config)] if config else []
        return [sys.executable, "-m", "lab.cli", args[0], *extra, *args[1:]]
    return argv


def render(report: dict) -> str:
    """The table: one row per figure, its parts' medians indented below."""
    h = report["host"]
    load = " ".join(f"{v:.1f}" for v in h["load_avg_1_5_15"])
    start = " ".join(f"{v:.1f}" for v in h["load_avg_at_start"])
    lines = [f"lab selftime, {h['date']}: {h['cpus']} CPUs, load average {start} at the "
             f"start and {load} at the end (1/5/15 min), {h['accel'] or 'no VM'}, "
             f"machine {h['machine']}, {report['repeat']} repeats",
             "",
             f"{'figure':48s} {'n':>2s} {'median':>7s} {'p95':>7s} {'min':>7s} {'max':>7s}"
             "  goal"]
    for f in report["figures"]:
        lines.append(f"{f['name'][:48]:48s} {len(f['values']):2d} {f['median']:7.2f} "
                     f"{f['p95']:7.2f} {f['min']:7.2f} {f['max']:7.2f}  {f['goal']}")
        for part, median in f["parts_median"].items():
            lines.append(f"  {part:46s}    {median:7.2f}  (median)")
        if f["note"]:
            lines.append(f"  ({f['note']})")
    return "\n".join(lines)


def request_from(args) -> Request:
    figures = tuple(x for v in (args.only or []) for x in v.split(",") if x) or FIGURES
    return Request(figures=figures, repeat=args.repeat, variant=args.selftime_variant,
                   case=args.case, config=args.config)

