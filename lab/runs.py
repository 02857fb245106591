"""The lab's jobs: `lab test`, `lab bench` and `lab run`, built from the stages.

Each job writes a RunResults (results.json) and the report next to it, so
shards of one job merge into one report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import bench, pipeline, report, suite, workloads
from lab.config import BenchConfig, LabConfig
from lab.errors import KernelCrash
from lab.guest import Guest
from lab.image import Image
from lab.kernel import KernelBuild
from lab.machine import Accel, Machine
from lab.results import CheckResult, RunResults
from lab.shard import Shard, select
from lab.ui import Ui


@dataclass(frozen=True)
class Prepared:
    builds: dict[str, KernelBuild]
    image: Image
    accel: Accel
    inputs: dict


def prepare(cfg: LabConfig, req: pipeline.VariantRequest, out: Path, ui: Ui) -> Prepared:
    """Build every variant and the image, pick the accelerator."""
    variants = pipeline.resolve_variants(cfg, req, out)
    builds = pipeline.build_variants(cfg, variants, out, ui)
    img = pipeline.image(cfg, out, ui)
    accel = pipeline.accelerator(cfg, builds[0].bzimage, out, ui)
    inputs = {
        "source": variants[0].source.description,
        "variants": {b.variant: b.key for b in builds},
        "image": img.key,
        "guest_programs": workloads.sources_key(img.key)[:24],
        "vcpus": cfg.vm.vcpus,
        "memory_mib": cfg.vm.memory_mib,
    }
    return Prepared({b.variant: b for b in builds}, img, accel, inputs)


def variant_facts(p: Prepared) -> dict[str, dict]:
    return {name: {**b.to_dict(), "kernel_release": b.release, "bzimage_sha256": b.sha256}
            for name, b in p.builds.items()}


@contextlib.contextmanager
def fleet(cfg: LabConfig, p: Prepared, names: Sequence[str], out: Path, ui: Ui
          ) -> Iterator[dict[str, tuple[Machine, Guest]]]:
    """Boot the named variants side by side, with our guest programs deployed."""
    with contextlib.ExitStack() as stack:
        vms: dict[str, tuple[Machine, Guest]] = {}
        for name in names:
            with ui.step(f"boot {name}") as step:
                vm, guest = stack.enter_context(
                    pipeline.booted(cfg, p.builds[name], p.image, p.accel, out))
                workloads.deploy(guest, cfg.cache_root)
                step.done(f"up in {vm.boot_seconds:.1f}s", detail=p.builds[name].release)
            vms[name] = (vm, guest)
        yield vms


def _results(run_id: str, p: Prepared, **fields) -> RunResults:
    return RunResults(
        run_id=run_id,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        inputs=p.inputs,
        variants=variant_facts(p),
        accel=f"{p.accel.name} ({p.accel.reason})",
        **fields,
    )


def write_reproducer(out: Path, argv: Sequence[str]) -> None:
    script = out / "reproduce.sh"
    script.write_text(
        "#!/bin/sh\n# Re-run this job with the same inputs (from the repository root).\n"
        f"exec .venv/bin/lab {shlex.join(argv)}\n")
    script.chmod(0o755)


# --- the suite ---------------------------------------------------------------------


def run_checks(
    cfg: LabConfig, p: Prepared, items: Sequence[tuple[str, suite.Case]], out: Path, ui: Ui,
    repeat: int = 1,
) -> list[CheckResult]:
    """Run (variant, case) items; one VM per variant, rebooted after a crash."""
    results: list[CheckResult] = []
    by_variant: dict[str, list[suite.Case]] = {}
    for variant, case in items:
        by_variant.setdefault(variant, []).append(case)
    for variant, cases in by_variant.items():
        features = p.builds[variant].features
        pending = list(cases)
        while pending:
            try:
                with fleet(cfg, p, [variant], out, ui) as vms:
                    _run_pending(vms[variant][1], variant, features, pending, results, ui,
                                 repeat)
            except KernelCrash as exc:
                # The kernel crashed (at boot, or in a case): that is a verdict
                # on the kernel, recorded against the case it hit; the VM is
                # rebooted for the rest.
                case = pending.pop(0)
                results.append(CheckResult(
                    case.name, variant, False, "no kernel crash", str(exc).splitlines()[0],
                    {"number": case.number}, 0.0, exc.excerpt))
                ui.note(f"{variant}: {case.name}: kernel crashed; rebooting for the rest")
    return results


def _run_pending(guest: Guest, variant: str, features: tuple[str, ...],
                 pending: list[suite.Case], results: list[CheckResult], ui: Ui,
                 repeat: int) -> None:
    while pending:
        case = pending[0]
        with ui.step(f"{variant}: {case.number:2d} {case.name}") as step:
            res = suite.run_case(case, guest, variant, features, repeat)
            step.done("pass" if res.passed else "FAIL", detail=res.observed)
        pending.pop(0)
        results.append(res)


def test_job(cfg: LabConfig, req: pipeline.VariantRequest, out: Path, ui: Ui, *,
             case_expr: str | None, repeat: int, shard: Shard | None,
             argv: Sequence[str]) -> RunResults:
    p = prepare(cfg, req, out, ui)
    cases = suite.select(case_expr)
    items = [(v, c) for v in p.builds for c in cases]
    items = select(items, shard, key=lambda it: f"test/{it[0]}/{it[1].name}")
    checks = run_checks(cfg, p, items, out, ui, repeat)
    results = _results(out.name, p, checks=tuple(checks))
    report.write_report(results, out, *compared_pair(results))
    write_reproducer(out, argv)
    return results


# --- the benchmark and the main job --------------------------------------------------


def bench_points(cfg: BenchConfig, names: Sequence[str], shard: Shard | None) -> list[bench.Point]:
    return select(bench.plan(cfg, names), shard, key=lambda pt: pt.key)


def run_bench(cfg: LabConfig, p: Prepared, points: Sequence[bench.Point],
              vms: dict[str, tuple[Machine, Guest]], ui: Ui) -> list:
    guests = {name: guest for name, (_vm, guest) in vms.items()}
    with ui.step(f"benchmark: {len(points)} fio runs") as step:
        def progress(i: int, pt: bench.Point, s) -> None:
            step.update(f"{i + 1}/{len(points)} {pt.mode} {pt.workload} {pt.numjobs} jobs "
                        f"{pt.variant}: {s.bw_bytes / 2**20:.0f} MiB/s")
            if not ui.live:
                ui.note(f"[{i + 1}/{len(points)}] {pt.variant:9s} {pt.mode:7s} {pt.workload:12s} "
                        f"jobs={pt.numjobs:<2d} {s.bw_bytes / 2**20:8.1f} MiB/s "
                        f"in flight {s.max_inflight}")
        samples = bench.run_plan(guests, cfg.bench, points, progress)
    return samples


def main_job(cfg: LabConfig, out: Path, ui: Ui, *, req: pipeline.VariantRequest,
             shard: Shard | None, argv: Sequence[str], with_checks: bool = True) -> RunResults:
    """Build, boot side by side, check the core claim, benchmark, report."""
    p = prepare(cfg, req, out, ui)
    names = list(p.builds)
    core = [c for c in suite.CASES if c.name == "parallel-nonextending"]
    checks_todo = select([(v, c) for v in names for c in core] if with_checks else [], shard,
                         key=lambda it: f"test/{it[0]}/{it[1].name}")
    points = bench_points(cfg.bench, names, shard)
    checks: list[CheckResult] = []
    samples: list = []
    with fleet(cfg, p, names, out, ui) as vms:
        for variant, case in checks_todo:
            guest = vms[variant][1]
            with ui.step(f"core check on {variant}") as step:
                res = suite.run_case(case, guest, variant, p.builds[variant].features)
                step.done("pass" if res.passed else "FAIL", detail=res.observed)
            checks.append(res)
        samples = run_bench(cfg, p, points, vms, ui)
    notes = (
        "ssf starts empty (fio fallocate=none): its first writes extend the file and take the "
        "exclusive lock even on patched kernels; ssf-presized measures purely non-extending "
        "writes.",
    )
    results = _results(out.name, p, samples=tuple(samples), checks=tuple(checks), notes=notes)
    results = dataclasses.replace(
        results, inputs={**results.inputs, "bench": dataclasses.asdict(cfg.bench)})
    base, new = compared_pair(results)
    paths = report.write_report(results, out, base=base, new=new)
    write_reproducer(out, argv)
    ui.note(f"report: {paths['markdown']}")
    return results


def compared_pair(results: RunResults) -> tuple[str, str]:
    """Which two variants the report compares: the first and the last asked for
    (baseline and patched by default; `--variant v2,v4` compares v2 with v4)."""
    names = list(results.variants)
    return names[0], names[-1]


def summary_table(results: RunResults) -> str:
    """The centrepiece table, as plain text for the terminal."""
    base, new = compared_pair(results)
    rows = report.comparison_table(results, base=base, new=new)
    lines = [f"{'mode':8s} {'workload':13s} {'jobs':>4s} {base + ' MiB/s':>16s} "
             f"{new + ' MiB/s':>16s} {'gain':>8s}  verdict"]
    for r in rows:
        def bw(s) -> str:
            return f"{s.mean:8.1f} ±{s.ci95 if s.ci95 != float('inf') else 0:5.1f}" if s else "-"
        gain = f"{r.gain_pct:+.0f}%" if r.gain_pct is not None else "-"
        lines.append(f"{r.mode:8s} {r.workload:13s} {r.numjobs:4d} {bw(r.base):>16s} "
                     f"{bw(r.new):>16s} {gain:>8s}  {r.verdict}")
    return "\n".join(lines)


def checks_matrix(results: RunResults, cell_width: int = 34) -> str:
    """case x variant: pass/FAIL with the first observed figure, as plain text."""
    variants = list(dict.fromkeys(c.variant for c in results.checks))
    names = list(dict.fromkeys(c.name for c in results.checks))
    by = {(c.name, c.variant): c for c in results.checks}
    width = max([len(n) for n in names] + [4])

    def cell(name: str, variant: str) -> str:
        c = by.get((name, variant))
        if c is None:
            return "-"
        text = f"{'pass' if c.passed else 'FAIL'} {c.observed.split(';')[0]}"
        return text if len(text) <= cell_width else text[:cell_width - 1] + "…"

    lines = [f"{'case':{width}s}  " + "  ".join(f"{v:{cell_width}s}" for v in variants)]
    for n in names:
        lines.append(f"{n:{width}s}  " + "  ".join(f"{cell(n, v):{cell_width}s}"
                                                    for v in variants))
    return "\n".join(line.rstrip() for line in lines)
