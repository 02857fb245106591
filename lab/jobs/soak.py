"""`lab fsx`: long labfsx soaks on variants, with progress.

Each variant boots once; the soak is a series of labfsx runs of `--chunk`
seconds with seeds seed, seed+1, ... on one labfs mount, so progress shows
after every run and a failure names the one seed that replays it. A kernel
that crashes or hangs under the soak is that variant's failure (the kernel's
report is kept), and the other variants still run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from lab import pipeline
from lab.config import LabConfig
from lab.errors import ConfigError, KernelFailure
from lab.guest.workloads import FuseMount, ServerOptions
from lab.host import cache
from lab.suite import fsx
from lab.suite.fsx import FsxOptions, FsxResult
from lab.ui import Ui


@dataclass(frozen=True)
class Soak:
    variant: str
    runs: tuple[FsxResult, ...]
    kernel_failure: str = ""  # the kernel crashed or hung: what it reported

    @property
    def passed(self) -> bool:
        return not self.kernel_failure and bool(self.runs) and all(r.passed for r in self.runs)

    def summary(self) -> str:
        ops, seconds, skipped = fsx.totals(list(self.runs))
        rate = f"{ops / seconds:.0f}/s" if seconds else "-"
        head = (f"{self.variant}: {len(self.runs)} runs, {ops} ops in {seconds:.0f}s ({rate}), "
                f"{skipped} skipped")
        if self.kernel_failure:
            return f"{head}; FAILED: {self.kernel_failure.splitlines()[0]}"
        bad = next((r for r in self.runs if not r.passed), None)
        if bad is None:
            return f"{head}; passed"
        return f"{head}; FAILED {bad.summary()}\n  replay in the guest: {bad.reproduce}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1, help="first seed; run i uses seed+i (default 1)")
    p.add_argument("--duration", type=float, default=60.0, metavar="S",
                   help="seconds of operations per variant (default 60)")
    p.add_argument("--chunk", type=float, default=30.0, metavar="S",
                   help="seconds per labfsx run, one seed each (default 30)")
    p.add_argument("--threads", type=int, default=4, help="labfsx threads (default 4)")
    p.add_argument("--files", type=int, default=2, help="files shared by the threads (default 2)")
    p.add_argument("--ops", metavar="KIND,...",
                   help=f"draw only these kinds (default all: {','.join(fsx.KINDS)})")
    p.add_argument("--delay-write-us", type=int, default=0, metavar="US",
                   help="labfs holds every WRITE this long (default 0)")


def options_from(args: argparse.Namespace) -> tuple[FsxOptions, ServerOptions]:
    """The command line as checked options, before anything is built."""
    fsx.check_soak(args.duration, args.chunk, "lab fsx")
    if args.delay_write_us < 0:
        raise ConfigError(f"lab fsx: --delay-write-us must be 0 or more, not {args.delay_write_us}")
    ops = tuple(k.strip() for k in args.ops.split(",") if k.strip()) if args.ops else ()
    options = FsxOptions(seed=args.seed, threads=args.threads, files=args.files, ops=ops)
    options.validate("lab fsx")
    return options, ServerOptions(delay_write_us=args.delay_write_us)


def soak_variant(cfg: LabConfig, p: pipeline.Prepared, name: str, out: Path, ui: Ui,
                 options: FsxOptions, server: ServerOptions, total_s: float,
                 chunk_s: float) -> Soak:
    runs: list[FsxResult] = []
    with pipeline.deployed(cfg, p, name, out, ui) as (vm, guest):
        options = replace(options, hang_timeout_s=fsx.HANG_S * vm.scale)
        with ui.step(f"fsx {name}: {total_s:g}s in runs of {chunk_s:g}s") as step:
            def progress(i: int, n: int, r: FsxResult) -> None:
                runs.append(r)
                ops, seconds, _ = fsx.totals(runs)
                step.update(f"run {i + 1}/{n}, {ops} ops, {ops / seconds:.0f}/s")
                if not ui.live:
                    ui.note(f"{name} run {i + 1}/{n}: {r.summary()}")

            try:
                with FuseMount(guest, server, name="fsx") as m:
                    fsx.soak(guest, m.path, options, total_s, chunk_s, progress)
            except KernelFailure as exc:
                step.done("the kernel failed")
                return Soak(name, tuple(runs), f"{exc.describe()}")
            soak = Soak(name, tuple(runs))
            step.done("passed" if soak.passed else "FAILED")
    return soak


def main(cfg: LabConfig, req: pipeline.VariantRequest, out: Path, ui: Ui,
         args: argparse.Namespace) -> int:
    options, server = options_from(args)
    p = pipeline.prepare(cfg, req, out, ui)
    soaks = [soak_variant(cfg, p, name, out, ui, options, server, args.duration, args.chunk)
             for name in p.builds]
    cache.write_json(out / "fsx.json", {
        "server": server.__dict__,
        "variants": {s.variant: {"passed": s.passed, "kernel_failure": s.kernel_failure,
                                 "runs": [r.to_dict() for r in s.runs]} for s in soaks}})
    for s in soaks:
        print(s.summary())
        bad = next((r for r in s.runs if not r.passed), None)
        if bad is not None and bad.failure is not None:
            print(bad.failure.report())
    ui.note(f"results: {out / 'fsx.json'}")
    return 0 if all(s.passed for s in soaks) else 1
