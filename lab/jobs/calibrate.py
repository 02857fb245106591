"""`lab calibrate`: every witness fails its case every time, the correct kernel never.

For each witness of the series (lab.kernel.witnesses) the variant `user` is
the series' newest version plus the witness, claiming what the newest version
claims; its case runs `repeat` times, each run judged on its own (a kernel
failure is a detection, and the next run gets a fresh VM). The series'
newest version runs every witnessed case as many times, in one VM while its
kernel stays healthy (with one run each, as `lab test` runs them: together,
then alone any that failed beside others). A witness detected
fewer than `repeat` times, or a correct kernel that fails even once, makes
the calibration fail (exit 1): the suite's power has drifted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import pipeline
from lab.config import LabConfig
from lab.errors import ConfigError, KernelFailure, LabError
from lab.jobs import runs
from lab.kernel import witnesses
from lab.kernel.series import load_series
from lab.kernel.variants import USER_VARIANT
from lab.report.document import Table
from lab.suite import catalog, checks
from lab.suite.spec import Case
from lab.ui import Ui
from lab.vm.machine import Machine

CORRECT = "patched"


@dataclass(frozen=True)
class CalibrateRequest:
    repeat: int = 1
    only: tuple[str, ...] = ()  # witness names or cases; empty: all
    jobs: int = 1  # witness VMs at a time


@dataclass(frozen=True)
class Row:
    variant: str  # a witness's name, or CORRECT
    case: str
    failed: int
    runs: int
    breaks: str = ""
    evidence: str = ""  # the last failure's observation (or the last pass's)

    @property
    def ok(self) -> bool:
        return self.failed == (0 if self.variant == CORRECT else self.runs)


@dataclass(frozen=True)
class Calibration:
    series: str
    repeat: int
    rows: tuple[Row, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> Table:
        return Table(("kernel", "case", "failed", "want", "verdict", "what it breaks"),
                     tuple((r.variant, r.case, f"{r.failed}/{r.runs}",
                            "0" if r.variant == CORRECT else f"{r.runs}",
                            "ok" if r.ok else "DRIFT", r.breaks) for r in self.rows))


def chosen(folder: Path, only: Sequence[str]) -> list[witnesses.Witness]:
    found = witnesses.load(folder)
    known = {c.name for c in catalog.CASES}
    for w in found:
        if w.case not in known:
            raise ConfigError(f"{w.patch}: names case {w.case!r}, which the suite does not have")
    picked = [w for w in found if not only or w.name in only or w.case in only]
    if not picked:
        raise ConfigError(f"{folder}: no witness matches {', '.join(only) or 'anything'} "
                          f"(witnesses: {', '.join(w.name for w in found) or 'none'})")
    return picked


class _Running:
    """The witness VMs up now, so that an interrupt or a lab error can stop
    them at once instead of waiting for their cases to end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vms: set[Machine] = set()
        self._stopped = False

    @contextlib.contextmanager
    def held(self, vm: Machine) -> Iterator[None]:
        with self._lock:
            self._vms.add(vm)
            stopped = self._stopped
        try:
            if stopped:  # it was still booting when the others were stopped
                _kill(vm)
                raise LabError("stopped: another witness failed or the run was interrupted")
            yield
        finally:
            with self._lock:
                self._vms.discard(vm)

    def kill(self) -> None:
        """SIGKILL every QEMU up now, and any that finishes booting later: the
        thread that owns each then fails its SSH command at once and tears
        the VM's folder down."""
        with self._lock:
            self._stopped = True
            vms = list(self._vms)
        for vm in vms:
            _kill(vm)


def _kill(vm: Machine) -> None:
    if vm.is_running() and vm.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(vm.pid, signal.SIGKILL)


def _runs(cfg: LabConfig, p: pipeline.Prepared, variant: str, cases: Sequence[Case],
          repeat: int, out: Path, ui: Ui,
          running: _Running | None = None) -> dict[str, tuple[int, str]]:
    """For each case, how many of its `repeat` runs failed (each judged alone)
    and the last observation; one VM serves them all until a kernel failure."""
    features = p.builds[variant].features
    todo = [c for c in cases for _ in range(repeat)]
    failed = {c.name: 0 for c in cases}
    evidence = {c.name: "" for c in cases}
    while todo:
        try:
            with pipeline.deployed(cfg, p, variant, out, ui) as (vm, guest), \
                    running.held(vm) if running else contextlib.nullcontext():
                while todo:
                    case = todo.pop(0)
                    run = checks.run_case(case, guest, variant, features)
                    failed[case.name] += not run.result.passed
                    evidence[case.name] = run.result.observed
                    if not run.vm_usable:
                        break
        except KernelFailure as exc:  # the kernel fails at boot: a detection for all left
            for case in todo:
                failed[case.name] += 1
                evidence[case.name] = f"kernel {exc.kind} at boot: {str(exc).splitlines()[0]}"
            todo = []
    return {name: (failed[name], evidence[name]) for name in failed}


def run(cfg: LabConfig, req: CalibrateRequest, out: Path, ui: Ui) -> Calibration:
    series = load_series(cfg.series)
    picked = chosen(series.folder, req.only)
    newest = series.version(series.newest)
    by_name = {c.name: c for c in catalog.CASES}
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        ui.note(f"{row.variant}: {row.case} failed {row.failed}/{row.runs} "
                f"({'ok' if row.ok else 'DRIFT'}): {row.evidence}")
        (out / "calibration.json").write_text(json.dumps(
            {"series": series.name, "repeat": req.repeat,
             "rows": [asdict(r) for r in rows]}, indent=2) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    correct = pipeline.prepare(cfg, pipeline.VariantRequest(names=(CORRECT,)), out, ui)
    witnessed = [by_name[name] for name in dict.fromkeys(w.case for w in picked)]
    if req.repeat == 1:
        # One run each (what make test pays): the correct kernel runs the cases
        # as `lab test` does, together and then alone any that failed beside
        # others (that verdict counts), in about a third of the time.
        for res in runs.run_checks(cfg, correct, [(CORRECT, c) for c in witnessed], out, ui):
            add(Row(CORRECT, res.name, int(not res.passed), 1, evidence=res.observed))
    else:
        for name, (failed, evidence) in _runs(cfg, correct, CORRECT, witnessed, req.repeat,
                                              out, ui).items():
            add(Row(CORRECT, name, failed, req.repeat, evidence=evidence))
    # Every witness is built first (one build at a time: each wants both cores),
    # then their VMs run `jobs` at a time: a case mostly waits on the server's
    # holds, so a second VM uses what the first leaves idle.
    prepared = []
    for w in picked:
        wreq = pipeline.VariantRequest(names=(USER_VARIANT,), patches=(newest.patch, w.patch),
                                       expect=newest.features)
        prepared.append((w, pipeline.prepare(cfg, wreq, out / w.name, ui)))

    running = _Running()

    def witness(w: witnesses.Witness, p: pipeline.Prepared, wui: Ui) -> Row:
        ((_, (failed, evidence)),) = _runs(cfg, p, USER_VARIANT, [by_name[w.case]], req.repeat,
                                           out / w.name, wui, running).items()
        return Row(w.name, w.case, failed, req.repeat, w.breaks, evidence)

    if req.jobs <= 1 or len(prepared) <= 1:
        for w, p in prepared:
            add(witness(w, p, ui))
    else:
        for row in _side_by_side(prepared, witness, req.jobs, ui, running.kill):
            add(row)
    order = {name: i for i, name in enumerate([CORRECT, *(w.name for w in picked)])}
    rows.sort(key=lambda r: order[r.variant])  # stable: the correct kernel's cases in order
    return Calibration(series.name, req.repeat, tuple(rows))


def _side_by_side(prepared: Sequence[tuple[witnesses.Witness, pipeline.Prepared]],
                  witness: Callable[[witnesses.Witness, pipeline.Prepared, Ui], Row],
                  jobs: int, ui: Ui, stop: Callable[[], None] = lambda: None
                  ) -> Iterator[Row]:
    """The witnesses' rows as they finish, `jobs` VMs at a time. Each runs
    with a quiet Ui of its own (one live status line cannot show two VMs); its
    row is the line printed. On an interrupt or an error no further witness
    starts and `stop` ends the running ones (their VMs), whose threads then
    tear down and end; the lab's reaper is there for anything left."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs,
                                                 thread_name_prefix="witness")
    ended = False
    try:
        with ui.step(f"{len(prepared)} witnesses, {jobs} at a time", phase="cases") as step:
            futures = [pool.submit(witness, w, p, Ui(quiet=True)) for w, p in prepared]
            for n, future in enumerate(concurrent.futures.as_completed(futures), 1):
                row = future.result()
                step.update(f"{n}/{len(futures)} done, last {row.variant}")
                yield row
            step.done(f"{len(futures)} done")
        ended = True
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if not ended:
            stop()
