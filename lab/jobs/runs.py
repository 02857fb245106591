"""The lab's jobs: `lab test`, `lab bench` and `lab run`, built from the stages.

Each job writes a RunResults (results.json) and the report next to it, so
shards of one job merge into one report.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lab import pipeline
from lab.bench import sweep
from lab.config import BenchConfig, LabConfig
from lab.errors import KernelCrash, KernelFailure, KernelHang
from lab.jobs import reproduce
from lab.kernel.kselftest import KselftestBuild
from lab.report import analysis, write
from lab.results import CheckResult, RunResults
from lab.shard import Shard, select
from lab.suite import ab, catalog, checks, kselftest, kunit, scripts, spec, together, verdict_cache
from lab.ui import Ui
from lab.verdict import FlakePolicy
from lab.vm.machine import Machine
from lab.vm.ssh import Guest


def variant_facts(p: pipeline.Prepared) -> dict[str, dict]:
    return {name: {**b.to_dict(), "kernel_release": b.release, "bzimage_sha256": b.sha256}
            for name, b in p.builds.items()}


def _results(run_id: str, p: pipeline.Prepared, **fields) -> RunResults:
    return RunResults(
        run_id=run_id,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        inputs=p.inputs,
        variants=variant_facts(p),
        accel=f"{p.accel.name} ({p.accel.reason})",
        **fields,
    )


def write_reproducer(out: Path, argv: Sequence[str], p: pipeline.Prepared | None = None) -> None:
    reproduce.write(out, argv, variant_keys={n: b.key for n, b in p.builds.items()} if p else None)


# --- the suite ---------------------------------------------------------------------


FATAL_KINDS = (KernelCrash.kind, KernelHang.kind)


def run_checks(
    cfg: LabConfig, p: pipeline.Prepared, items: Sequence[tuple[str, spec.Case]], out: Path,
    ui: Ui, repeat: int = 1, on_result: Callable[[CheckResult], None] | None = None,
    fresh: bool = True,
) -> list[CheckResult]:
    """Run (variant, case) items; one VM per variant, and a fresh one after
    any case in which the kernel failed or reported trouble, so one broken
    case never decides the ones after it. Independent cases run together
    (lab.suite.together, `[tests] lanes`). Unless `fresh`, a variant whose verdicts
    are cached under the same inputs is not run again."""
    results: list[CheckResult] = []
    record = on_result or (lambda _res: None)
    by_variant: dict[str, list[spec.Case]] = {}
    for variant, case in items:
        by_variant.setdefault(variant, []).append(case)
    for variant, cases in by_variant.items():
        tests = p.kselftests.get(variant)
        key = verdict_cache.key(cfg, p.builds[variant], p.image.key, p.accel.name, cases,
                                repeat, tests.key if tests else "")
        cached = None if fresh else verdict_cache.load(cfg.cache_root, key)
        if cached is not None:
            origin = cached[0].cached_from if cached else "?"
            ui.note(f"{variant}: {len(cached)} verdicts cached from run {origin} (same "
                    "kernel, image, guest programs, suite and options; --fresh re-runs)")
            for res in cached:
                record(res)
            results += cached
            continue
        done = _run_variant(cfg, p, variant, cases, out, ui, repeat, record)
        verdict_cache.save(cfg.cache_root, key, out.name, done)
        results += done
    return results


def _run_variant(cfg: LabConfig, p: pipeline.Prepared, variant: str, cases: list[spec.Case],
                 out: Path, ui: Ui, repeat: int,
                 record: Callable[[CheckResult], None]) -> list[CheckResult]:
    """The variant's results in the cases' order."""
    done: list[CheckResult] = []

    def keep(res: CheckResult) -> None:
        done.append(res)
        record(res)

    features = p.builds[variant].features
    pending = list(cases)
    batch: together.Batch | None = None
    failed_by: dict[str, list[str]] = {}  # a fatal kernel failure's kind -> the cases
    while pending:
        try:
            with pipeline.deployed(cfg, p, variant, out, ui) as (_vm, guest):
                # One batch per variant; what it leaves runs one by one.
                group = together.grouped(pending, cfg.tests.lanes) if batch is None else []
                if group:
                    batch = _run_together(group, guest, variant, features, lanes=cfg.tests.lanes,
                                          repeat=repeat, ui=ui)
                    if batch.trouble:
                        ui.note(f"{variant}: {batch.trouble}; the cases run one by one on a "
                                "fresh VM")
                        continue
                    for res in batch.passed:
                        keep(res)
                    passed = {r.name for r in batch.passed}
                    pending = [c for c in pending if c.name not in passed]
                    if batch.failed:
                        again = "it runs" if len(batch.failed) == 1 else "each runs"
                        ui.note(f"{variant}: {', '.join(batch.failed)} failed beside other "
                                f"cases; {again} again alone, and that verdict counts")
                while pending:
                    case = pending.pop(0)
                    with ui.step(f"{variant}: {case.number:2d} {case.name}",
                                 phase="cases") as step:
                        run = checks.run_case(case, guest, variant, features, repeat,
                                              FlakePolicy(cfg.tests.flake_threshold))
                        step.done("pass" if run.result.passed else "FAIL",
                                  detail=run.result.observed)
                    res = run.result
                    if batch is not None and case.name in batch.failed:
                        seen = batch.failed[case.name]
                        res = dataclasses.replace(res, details={
                            **res.details, "together": {"passed": seen.passed,
                                                        "observed": seen.observed}})
                    keep(res)
                    if _enough_said(cfg, res, failed_by) and pending:
                        kind = res.kernel.kind if res.kernel else ""
                        ui.note(f"{variant}: the kernel's {kind} failed "
                                f"{len(failed_by[kind])} cases; the {len(pending)} left are not "
                                "run (--keep-going runs them)")
                        for left in pending:
                            keep(checks.not_run(left, variant, kind, failed_by[kind]))
                        pending.clear()
                        break
                    if not run.vm_usable and pending:
                        ui.note(f"{variant}: {case.name}: the kernel failed or reported "
                                "trouble; a fresh VM for the remaining cases")
                        break
        except KernelFailure as exc:
            # The kernel failed while booting or deploying: every case left
            # fails with the same evidence (booting it again would too).
            for case in pending:
                keep(checks.boot_failure(case, variant, exc))
            pending.clear()
    if batch is None:
        return done  # one by one: already in the cases' order
    if extra := together.unexplained(batch, variant, done):
        keep(extra)
    order = {c.name: i for i, c in enumerate(cases)}  # names are unique in a batch
    return sorted(done, key=lambda r: order.get(r.name, -1))


def _enough_said(cfg: LabConfig, res: CheckResult, failed_by: dict[str, list[str]]) -> bool:
    """Whether the kernel has now crashed or hung the same way in enough cases
    that the rest would only repeat it, each at the cost of a fresh VM and a
    hung-task timeout."""
    if res.kernel is None or res.kernel.kind not in FATAL_KINDS or cfg.tests.keep_going:
        return False
    failed_by.setdefault(res.kernel.kind, []).append(res.name)
    return len(failed_by[res.kernel.kind]) >= cfg.tests.stop_after_same_failures


def _run_together(group: list[spec.Case], guest: Guest, variant: str,
                  features: tuple[str, ...], *, lanes: int, repeat: int,
                  ui: Ui) -> together.Batch:
    finished: list[str] = []
    with ui.step(f"{variant}: {len(group)} cases together, {lanes} at a time",
                 phase="cases") as step:
        def progress(case: spec.Case) -> None:
            finished.append(case.name)
            step.update(f"{len(finished)}/{len(group)} done, last {case.name}")
        batch = together.run_batch(group, guest, variant, features, lanes=lanes,
                                   repeat=repeat, progress=progress)
        step.done("kernel trouble" if batch.trouble else
                  f"{len(batch.passed)} pass, {len(batch.failed)} to run alone")
    if not batch.trouble:
        for res in sorted([*batch.passed, *batch.failed.values()],
                          key=lambda r: r.number):
            ui.result(f"{variant}: {res.number:2d} {res.name}",
                      "pass" if res.passed else "fail beside others", res.duration_s,
                      res.observed)
    return batch


def _incremental(out: Path, p: pipeline.Prepared) -> Callable[[CheckResult], None]:
    """Write results.json after every check, so a run that dies (or is
    interrupted) leaves what it finished behind as evidence."""
    done: list[CheckResult] = []

    def write(res: CheckResult) -> None:
        done.append(res)
        _results(out.name, p, checks=tuple(done), notes=("partial: the run did not finish",)
                 ).save(out / "results.json")
    return write


def suite_items(cfg: LabConfig, names: Sequence[str], case_expr: str | None,
                shard: Shard | None, kselftests: Mapping[str, KselftestBuild] | None = None
                ) -> list[tuple[str, spec.Case]]:
    """Every (variant, case) to run: the suite's cases, then the user's scripts."""
    cases = catalog.select(case_expr)
    items = [(v, c) for v in names for c in cases]
    # The user's own scripts (lab/suite/scripts.py): cases named script:<file>;
    # the tree's own tests: kselftest:<target>, kunit:<glob>.
    items += scripts.items(cfg.tests.scripts, names, cfg.tests.script_timeout_s)
    items += kselftest.items(kselftests or {}, names, cfg.tests.script_timeout_s)
    items += [(v, c) for v in names for c in kunit.cases(cfg.tests.kunit)]
    return select(items, shard, key=lambda it: f"test/{it[0]}/{it[1].name}")


def test_job(cfg: LabConfig, req: pipeline.VariantRequest, out: Path, ui: Ui, *,
             case_expr: str | None, repeat: int, shard: Shard | None,
             argv: Sequence[str], fresh: bool = False) -> RunResults:
    p = pipeline.prepare(cfg, req, out, ui)
    write_reproducer(out, argv, p)
    items = suite_items(cfg, list(p.builds), case_expr, shard, p.kselftests)
    found = run_checks(cfg, p, items, out, ui, repeat, on_result=_incremental(out, p),
                       fresh=fresh)
    results = judged(_results(out.name, p, checks=tuple(found)))
    with ui.phase("report"):
        write.write_report(results, out, *compared_pair(results))
    return _with_timings(results, out, ui)


# --- the benchmark and the main job --------------------------------------------------


def bench_points(cfg: BenchConfig, names: Sequence[str], shard: Shard | None) -> list[sweep.Point]:
    # A point's repeats and both variants' runs of it on one runner: its mean,
    # interval and gain never mix machines.
    return select(sweep.plan(cfg, names), shard, key=lambda pt: pt.key,
                  together=lambda pt: f"{pt.mode}/{pt.workload}/{pt.numjobs}")


def run_bench(cfg: LabConfig, p: pipeline.Prepared, points: Sequence[sweep.Point],
              vms: dict[str, tuple[Machine, Guest]], ui: Ui) -> list:
    guests = {name: guest for name, (_vm, guest) in vms.items()}
    with ui.step(f"benchmark: {len(points)} fio runs", phase="fio") as step:
        def progress(i: int, pt: sweep.Point, s) -> None:
            step.update(f"{i + 1}/{len(points)} {pt.mode} {pt.workload} {pt.numjobs} jobs "
                        f"{pt.variant}: {s.bw_bytes / 2**20:.0f} MiB/s")
            if not ui.live:
                ui.note(f"[{i + 1}/{len(points)}] {pt.variant:9s} {pt.mode:7s} {pt.workload:12s} "
                        f"jobs={pt.numjobs:<2d} {s.bw_bytes / 2**20:8.1f} MiB/s "
                        f"in flight {s.max_inflight}")
        samples = sweep.run_plan(guests, cfg.bench, points, progress)
        ui.note(sweep.efficiency(samples, step.elapsed).line())
    return samples


def main_job(cfg: LabConfig, out: Path, ui: Ui, *, req: pipeline.VariantRequest,
             shard: Shard | None, argv: Sequence[str], with_checks: bool = True,
             fresh: bool = False, case_expr: str | None = None) -> RunResults:
    """Build, run the whole suite on every variant, benchmark side by side, report."""
    sweep.check(cfg.bench, out)  # a bad job file fails before any build
    p = pipeline.prepare(cfg, req, out, ui)
    write_reproducer(out, argv, p)
    names = list(p.builds)
    items = suite_items(cfg, names, case_expr, shard, p.kselftests) if with_checks else []
    found = run_checks(cfg, p, items, out, ui, on_result=_incremental(out, p), fresh=fresh)
    points = bench_points(cfg.bench, names, shard)
    samples: list = []
    if points:
        with pipeline.fleet(cfg, p, names, out, ui) as vms:
            samples = run_bench(cfg, p, points, vms, ui)
    # The report explains ssf vs ssf-presized (lab.narrative.SSF_STARTS_EMPTY).
    results = _results(out.name, p, samples=tuple(samples), checks=tuple(found),
                       notes=sweep.notes(cfg.bench))
    results = judged(dataclasses.replace(
        results, inputs={**results.inputs, "bench": dataclasses.asdict(cfg.bench)}))
    base, new = compared_pair(results)
    with ui.phase("report"):
        paths = write.write_report(results, out, base=base, new=new)
    ui.note(f"report: {paths['markdown']}")
    return _with_timings(results, out, ui)


def _with_timings(results: RunResults, out: Path, ui: Ui) -> RunResults:
    """The run's phase times into results.json (written again, the report
    being one of the phases), and on the terminal."""
    results = dataclasses.replace(results, timings=ui.phases.to_dict())
    results.save(out / "results.json")
    ui.note(ui.phases.summary())
    return results


def judged(results: RunResults) -> RunResults:
    """The tree's and the user's tests judged against the compared base (lab.suite.ab)."""
    base, new = compared_pair(results)
    return dataclasses.replace(results, checks=tuple(ab.judge(results.checks, base, new)))


def compared_pair(results: RunResults) -> tuple[str, str]:
    """Which two variants the report compares: the first and the last asked for
    (baseline and patched by default; `--variant v2,v4` compares v2 with v4)."""
    names = list(results.variants)
    return names[0], names[-1]


def summary_table(results: RunResults) -> str:
    """The centrepiece table, as plain text for the terminal."""
    base, new = compared_pair(results)
    rows = analysis.comparison_table(results, base=base, new=new)
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
