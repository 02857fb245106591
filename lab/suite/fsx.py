"""labfsx from the host: its options, its report as typed records, a run over
a labfs mount, the suite case and long soaks.

labfsx (lab/guest/programs/labfsx.c, whose header states the model) runs
seeded random operations from several threads on a few shared files and
checks every result against a model; it prints one JSON object, parsed here
and nowhere else. A mismatch is a verdict on the kernel (a failed check with
the seed, the bad bytes and each thread's last operations), never an error of
the lab.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError, GuestError, KernelHang, ParseError
from lab.guest.records import Fields, load_json
from lab.guest.workloads import REMOTE, ServerOptions
from lab.suite.spec import CaseContext, Observation
from lab.vm.ssh import Guest

BINARY = f"{REMOTE}/bin/labfsx"
KINDS = ("write", "write-odirect", "read", "read-odirect", "mmap-read", "shared-write",
         "shared-read", "append", "truncate", "extend", "fallocate", "fsync")
INJECTIONS = ("flip", "misplace", "lose", "duplicate", "tear", "size")
RESULTS = ("pass", "fail", "hang")

# The suite: three fixed seeds, four seconds each. Three seeds give three
# different operation streams (mixes, offsets, which tail operation races
# which) for the price of one mount. Under TCG labfsx reaches about 400 ops/s
# on a labfs mount, so 4 s is about 1,600 operations and a dozen full-file
# checks per seed, every kind drawn dozens of times; the case takes about
# 15 s, inside a 40 s case budget (KVM seconds; TCG scales it).
SUITE_SEEDS = (1, 2, 3)
SUITE_RUN_S = 4.0
# No hold on WRITEs: four threads on two vCPUs already race in the kernel,
# and under TCG a 1 ms hold cuts the baseline to a tenth of the operations
# (its serialized writers wait out each other's holds). Holding requests to
# force overlap is the targeted cases' job.
SUITE_SERVER = ServerOptions()
# labfsx reports a hang itself after this long without progress (KVM seconds,
# scaled); the kernel's hung-task detector fires at 10 s.
HANG_S = 8.0


@dataclass(frozen=True)
class FsxOptions:
    """labfsx's command line (the C side checks the same bounds)."""

    seed: int = 1
    threads: int = 4
    files: int = 2
    duration_s: float = 5.0
    max_ops: int = 0  # per thread; 0: until duration_s
    epoch: int = 32  # operations per thread between full checks
    ops: tuple[str, ...] = ()  # kinds to draw from; empty: all
    hang_timeout_s: float = 60.0
    inject: str | None = None  # debug: corrupt behind the model's back
    inject_at: int = 0
    keep: bool = False  # keep the files even when the run passes

    def validate(self, where: str = "labfsx") -> None:
        def bad(option: str, why: str) -> ConfigError:
            return ConfigError(f"{where}: {option} {why}")

        if not 0 <= self.seed < 2**64:
            raise bad("--seed", f"must be 0..2^64-1, not {self.seed}")
        if not 1 <= self.threads <= 64:
            raise bad("--threads", f"must be 1..64, not {self.threads}")
        if not 1 <= self.files <= 8:
            raise bad("--files", f"must be 1..8, not {self.files}")
        if not 0 <= self.duration_s <= 1e7 or (self.duration_s == 0 and not self.max_ops):
            raise bad("--duration", f"must be more than 0 seconds, not {self.duration_s}")
        if self.max_ops < 0:
            raise bad("--max-ops", f"must be 0 or more, not {self.max_ops}")
        if not 1 <= self.epoch <= 100_000:
            raise bad("--epoch", f"must be 1..100000, not {self.epoch}")
        unknown = [k for k in self.ops if k not in KINDS]
        if unknown:
            raise bad("--ops", f"has unknown kinds {', '.join(unknown)}; known: {', '.join(KINDS)}")
        if self.hang_timeout_s <= 0:
            raise bad("--hang-timeout", "must be more than 0 seconds")
        if self.inject is not None and self.inject not in INJECTIONS:
            raise bad("--inject", f"must be one of {', '.join(INJECTIONS)}, not {self.inject!r}")

    def argv(self, directory: str, binary: str = BINARY) -> list[str]:
        args = [binary, f"--dir={directory}", f"--seed={self.seed}",
                f"--threads={self.threads}", f"--files={self.files}",
                f"--duration={self.duration_s:g}", f"--epoch={self.epoch}",
                f"--hang-timeout={self.hang_timeout_s:g}"]
        if self.max_ops:
            args.append(f"--max-ops={self.max_ops}")
        if self.ops:
            args.append(f"--ops={','.join(self.ops)}")
        if self.inject:
            args += [f"--inject={self.inject}", f"--inject-at={self.inject_at}"]
        if self.keep:
            args.append("--keep")
        return args


# --- the report -----------------------------------------------------------------------


@dataclass(frozen=True)
class FsxOp:
    """One operation in a thread's history."""

    op: int
    kind: str
    sub: str | None  # how it ran (plain/odirect, grow/shrink, ...) or "skipped"
    file: int
    offset: int
    length: int
    result: str  # the return value, "-1 ERRNO" or "in flight"

    def line(self) -> str:
        how = f"/{self.sub}" if self.sub else ""
        return (f"#{self.op} {self.kind}{how} f{self.file} {self.offset} {self.length} "
                f"-> {self.result}")


@dataclass(frozen=True)
class FsxFailure:
    type: str  # mismatch | error (a call failed or came back short) | hang
    what: str
    thread: int
    op: int  # 0 for the checks at an epoch's end
    kind: str
    file: int
    path: str | None
    offset: int | None  # first bad offset
    bytes_at: int | None  # where `expected` and `actual` start
    expected: str | None  # hex
    expected_is: str | None  # the expected bytes decoded (writer, op, meant offset)
    actual: str | None
    actual_is: str | None
    history: Mapping[int, tuple[FsxOp, ...]]

    def summary(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        found = f"; found {self.actual_is}" if self.actual_is else ""
        return (f"{self.type} in thread {self.thread} op {self.op} ({self.kind}), "
                f"file {self.file}{where}: {self.what}{found}")

    def report(self) -> str:
        lines = [self.summary()]
        if self.expected is not None:
            lines += [f"  bytes from {self.bytes_at}:",
                      f"    expected {self.expected}  ({self.expected_is or '?'})",
                      f"    actual   {self.actual}  ({self.actual_is or '?'})"]
        for thread, ops in sorted(self.history.items()):
            lines.append(f"  thread {thread}:")
            lines += [f"    {op.line()}" for op in ops]
        return "\n".join(lines)


@dataclass(frozen=True)
class KindCount:
    done: int
    skipped: int
    busy_s: float  # thread-seconds spent in operations of this kind


@dataclass(frozen=True)
class FsxResult:
    result: str  # pass | fail | hang
    seed: int
    reproduce: str  # the guest command line that replays this run
    elapsed_s: float
    epochs: int
    ops: int
    ops_per_s: float
    skipped: int
    kinds: Mapping[str, KindCount]
    check_busy_s: float  # thread-seconds spent in the checks at the epochs' ends
    mmap_shared_refused: int  # MAP_SHARED refused (FUSE direct_io), MAP_PRIVATE used
    odirect_open: str  # "ok" or the errno an O_DIRECT open got (its ops skipped)
    fallocate_unsupported: Mapping[str, int]
    injected: Mapping[str, int | str] | None
    failure: FsxFailure | None

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    def summary(self) -> str:
        if self.failure:
            return f"seed {self.seed}: {self.failure.summary()}"
        return (f"seed {self.seed}: {self.ops} ops in {self.elapsed_s:.1f}s "
                f"({self.ops_per_s:.0f}/s), {self.skipped} skipped")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _op(f: Fields) -> FsxOp:
    return FsxOp(op=f.int("op"), kind=_str(f, "kind"), sub=f.opt_str("sub"), file=f.int("file"),
                 offset=f.int("offset"), length=f.int("length"), result=_str(f, "result"))


def _str(f: Fields, key: str) -> str:
    value = f.opt_str(key)
    if value is None:
        raise ParseError(f"{f.what}: field {key!r} is missing or null")
    return value


def _failure(f: Fields, history: Fields) -> FsxFailure:
    return FsxFailure(
        type=_str(f, "type"), what=_str(f, "what"), thread=f.int("thread"), op=f.int("op"),
        kind=_str(f, "kind"), file=f.int("file"), path=f.opt_str("path"),
        offset=f.opt_int("offset"), bytes_at=f.opt_int("bytes_at"),
        expected=f.opt_str("expected"), expected_is=f.opt_str("expected_is"),
        actual=f.opt_str("actual"), actual_is=f.opt_str("actual_is"),
        history={int(t): tuple(_op(Fields(o, f"{history.what}[{t}]"))
                               for o in history.list(t)) for t in history.data})


def parse_fsx(text: str) -> FsxResult:
    """labfsx's JSON as typed records; a missing field is a ParseError naming it."""
    f = Fields(load_json(text, "labfsx output"), "labfsx output")
    result = _str(f, "result")
    if result not in RESULTS:
        raise ParseError(f"labfsx output: result {result!r} is not one of {', '.join(RESULTS)}")
    kinds = f.obj("kinds")
    notes = f.obj("notes")
    falloc = notes.obj("fallocate_unsupported")
    failure = None
    if f.data.get("failure") is not None:
        failure = _failure(f.obj("failure"), f.obj("history"))
    injected = f.data.get("injected")
    return FsxResult(
        result=result, seed=f.int("seed"), reproduce=_str(f, "reproduce"),
        elapsed_s=f.float("elapsed_s"), epochs=f.int("epochs"), ops=f.int("ops"),
        ops_per_s=f.float("ops_per_s"), skipped=f.int("skipped"),
        kinds={k: KindCount(kinds.obj(k).int("done"), kinds.obj(k).int("skipped"),
                            kinds.obj(k).float("busy_s")) for k in kinds.data},
        check_busy_s=f.float("check_busy_s"),
        mmap_shared_refused=notes.int("mmap_shared_refused"),
        odirect_open=_str(notes, "odirect_open"),
        fallocate_unsupported={k: falloc.int(k) for k in falloc.data},
        injected=dict(f.obj("injected").data) if injected is not None else None,
        failure=failure,
    )


# --- running it -------------------------------------------------------------------------


def run_fsx(guest: Guest, mount_path: str, options: FsxOptions) -> FsxResult:
    """Run labfsx on `mount_path` (a labfs mount) in the guest.

    Exit 0 and 1 carry a report (pass; fail or hang); 2 and 3 are the lab's
    own fault (a bad command line, files that cannot be created).
    """
    options.validate()
    scale = guest.machine.scale
    # The duration is wall-clock time whatever the accelerator; the slack is not.
    limit = options.duration_s + options.hang_timeout_s + 60 * scale
    if options.max_ops and not options.duration_s:
        limit = 600 * scale
    res = guest.run(options.argv(mount_path), timeout=limit, scale=False)
    if res.exit_status not in (0, 1) or not res.stdout.strip():
        raise GuestError(f"labfsx could not run (exit {res.exit_status})", excerpt=res.tail())
    return parse_fsx(res.stdout)


def check_soak(total_s: float, chunk_s: float, where: str = "lab fsx") -> None:
    """A soak's bounds (`lab fsx --duration/--chunk`), checked here only."""
    for option, value in (("--duration", total_s), ("--chunk", chunk_s)):
        if not value > 0:
            raise ConfigError(f"{where}: {option} must be more than 0 seconds, not {value}")


def soak(guest: Guest, mount_path: str, options: FsxOptions, total_s: float, chunk_s: float,
         on_run: Callable[[int, int, FsxResult], None] | None = None) -> list[FsxResult]:
    """Runs of `chunk_s` seconds with seeds seed, seed+1, ... until `total_s`
    have passed or one fails; each run is reproducible on its own."""
    check_soak(total_s, chunk_s)
    count = max(1, math.ceil(total_s / chunk_s - 1e-9))
    results: list[FsxResult] = []
    for i in range(count):
        length = min(chunk_s, total_s - i * chunk_s)
        run = dataclasses.replace(options, seed=options.seed + i, duration_s=length)
        results.append(run_fsx(guest, mount_path, run))
        if on_run:
            on_run(i, count, results[-1])
        if not results[-1].passed:
            break
    return results


def skip_reasons(results: list[FsxResult]) -> list[str]:
    """What was skipped (or done another way) over several runs, in words."""
    skipped = {k: sum(r.kinds[k].skipped for r in results if k in r.kinds) for k in KINDS}
    reasons = [f"{n} {k} skipped" for k, n in skipped.items() if n]
    refused = sum(r.mmap_shared_refused for r in results)
    if refused:
        reasons.append(f"MAP_SHARED refused {refused}x, MAP_PRIVATE used")
    return reasons


def totals(results: list[FsxResult]) -> tuple[int, float, int]:
    """Operations, seconds and skipped operations over several runs."""
    return (sum(r.ops for r in results), sum(r.elapsed_s for r in results),
            sum(r.skipped for r in results))


# --- the suite case ---------------------------------------------------------------------


def case_fsx(ctx: CaseContext) -> Observation:
    """labfsx with the suite's fixed seeds on one labfs mount; any mismatch fails."""

    g = ctx.guest
    hang_s = HANG_S * g.machine.scale
    results: list[FsxResult] = []
    with ctx.mount(SUITE_SERVER) as m:
        for seed in SUITE_SEEDS:
            r = run_fsx(g, m.path, FsxOptions(seed=seed, duration_s=SUITE_RUN_S,
                                               hang_timeout_s=hang_s))
            results.append(r)
            if r.result == "hang" and r.failure:
                raise KernelHang(f"labfsx seed {seed}: {r.failure.what}",
                                 excerpt=r.failure.report())
            if not r.passed:
                break
    ops, seconds, skipped = totals(results)
    seeds = ",".join(str(s) for s in SUITE_SEEDS)
    expected = (f"every result matches the model (seeds {seeds}, "
                f"{SUITE_RUN_S:g} s each)")
    details: dict[str, Any] = {"runs": [r.to_dict() for r in results],
                               "server": dataclasses.asdict(m.stats) if m.stats else None}
    failed = next((r for r in results if not r.passed), None)
    if failed is not None and failed.failure is not None:
        details["report"] = failed.failure.report()
        return Observation(False, expected, f"{failed.summary()} (replay: {failed.reproduce})",
                           details)
    reasons = skip_reasons(results)
    observed = (f"{ops} ops at {ops / seconds if seconds else 0:.0f}/s, {skipped} skipped"
                + (f" ({'; '.join(reasons)})" if reasons else "") + ", no mismatch")
    return Observation(True, expected, observed, details)
