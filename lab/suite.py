"""The regression and concurrency suite, as data, and its runner.

Every case drives real I/O in the guest and judges the kernel by what our
FUSE server observed (WRITEs in flight, extending WRITEs overlapping others)
and by what the writers got back. Expectations follow what the variant
claims, so one suite judges the baseline, every version of a series and a
user's patch. Overlap is made deterministic by construction: the server
holds each WRITE (or SETATTR) for far longer than the writers need to reach
it, so "could run in parallel" always shows as "did run in parallel".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab import console
from lab.errors import ConfigError, GuestError, LabError
from lab.guest import Guest
from lab.results import CheckResult
from lab.workloads import REMOTE, FuseMount, ServerOptions, probe

FEATURE = "parallel-direct-writes"
WRITERS = 8
BLOCK = 64 * 1024
# Long enough that all writers reach the server under TCG, far below the
# 30 s hung-task timeout of the debug kernel.
HOLD_US = 400_000


@dataclass(frozen=True)
class Observation:
    passed: bool
    expected: str
    observed: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseContext:
    guest: Guest
    features: tuple[str, ...]

    @property
    def parallel(self) -> bool:
        return FEATURE in self.features


@dataclass(frozen=True)
class Case:
    number: int
    name: str
    title: str
    run: Callable[[CaseContext], Observation]


def _writers_ok(result: dict[str, Any], length: int) -> tuple[bool, str]:
    bad = [w for w in result["writers"] if w["ret"] != length]
    if not bad:
        return True, ""
    first = bad[0]
    return False, f"writer {first['writer']} got {first['ret']} ({first.get('errno_name')})"


def _inflight_case(ctx: CaseContext, options: ServerOptions, want_parallel: bool, *,
                   base: int = 0, stride: int = BLOCK, direct: bool = False,
                   name: str = "f") -> Observation:
    """N writers released together; count how many WRITEs the server held at once."""
    with FuseMount(ctx.guest, options, name="case") as m:
        result = probe(ctx.guest, "pwrite", file=f"{m.path}/{name}", writers=WRITERS,
                       block=BLOCK, base=base, stride=stride, presize=WRITERS * BLOCK,
                       direct=direct)
    stats = m.file_stats(name)
    want = WRITERS if want_parallel else 1
    ok, why = _writers_ok(result, BLOCK)
    inflight = stats.get("max_inflight", -1)
    observed = f"{inflight} of {WRITERS} WRITEs in flight" + (f"; {why}" if why else "")
    return Observation(ok and inflight == want, f"{want} in flight", observed,
                       {"server": stats, "final_size": result["final_size"]})


def case_parallel_nonextending(ctx: CaseContext) -> Observation:
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US), ctx.parallel)


def case_flag_off(ctx: CaseContext) -> Observation:
    return _inflight_case(
        ctx, ServerOptions(delay_write_us=HOLD_US, parallel_direct_writes=False), False)


def case_cached_odirect(ctx: CaseContext) -> Observation:
    # O_DIRECT on a page-cache open takes the generic direct-IO path under
    # the exclusive lock, whatever the server's flag says.
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US, direct_io=False), False,
                          direct=True)


def case_eof_exact(ctx: CaseContext) -> Observation:
    # Every writer writes the last block: pos + len == i_size is not extending.
    last = (WRITERS - 1) * BLOCK
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US), ctx.parallel,
                          base=last, stride=0)


def case_extending(ctx: CaseContext) -> Observation:
    """Half the writers inside the file, one across EOF, the rest beyond it."""
    presize = WRITERS * BLOCK // 2 + BLOCK // 2
    with FuseMount(ctx.guest, ServerOptions(delay_write_us=HOLD_US), name="case") as m:
        result = probe(ctx.guest, "pwrite", file=f"{m.path}/f", writers=WRITERS, block=BLOCK,
                       base=0, presize=presize, verify=True)
    stats = m.file_stats("f")
    overlap = stats.get("max_extending_overlap", -1)
    ok, why = _writers_ok(result, BLOCK)
    size_ok = result["final_size"] == WRITERS * BLOCK
    passed = ok and overlap == 0 and size_ok and result["verify_ok"]
    observed = (f"{overlap} extending WRITEs overlapped others; size {result['final_size']}"
                f"{'' if result['verify_ok'] else '; content wrong'}" + (f"; {why}" if why else ""))
    return Observation(passed, f"0 overlapping, size {WRITERS * BLOCK}, content exact", observed,
                       {"server": stats, "probe": result})


def case_append(ctx: CaseContext) -> Observation:
    writers, records, record = 4, 8, 512
    with FuseMount(ctx.guest, ServerOptions(delay_write_us=20_000), name="case") as m:
        result = probe(ctx.guest, "append", file=f"{m.path}/a", writers=writers,
                       records=records, record=record, timeout=300)
    stats = m.file_stats("a")
    inflight = stats.get("max_inflight", -1)
    passed = bool(result["ok"]) and inflight == 1
    observed = (f"{result['records_found']}/{result['records_expected']} records, "
                f"{result['duplicates']} duplicated, {result['missing']} missing, "
                f"{result['torn']} torn, size {result['final_size']}/{result['expected_size']}, "
                f"{inflight} appends in flight")
    return Observation(passed, "every record once, size exact, 1 in flight", observed,
                       {"server": stats, "probe": result})


def case_truncate_race(ctx: CaseContext) -> Observation:
    """Writers decide their lock while a delayed SETATTR holds the inode lock
    and i_size is still large; once the truncate lands their writes extend
    the file and must not run alongside each other."""
    options = ServerOptions(delay_write_us=200_000, delay_setattr_us=1_500_000)
    with FuseMount(ctx.guest, options, name="case") as m:
        result = probe(ctx.guest, "truncate-race", file=f"{m.path}/t", writers=WRITERS,
                       block=BLOCK, presize=WRITERS * BLOCK, truncate_to=0, writer_delay_ms=400,
                       timeout=300)
    stats = m.file_stats("t")
    overlap = stats.get("max_extending_overlap", -1)
    ok, why = _writers_ok(result, BLOCK)
    passed = ok and overlap == 0 and result["final_size"] == WRITERS * BLOCK
    observed = (f"{overlap} extending WRITEs overlapped others after the truncate; "
                f"{stats.get('max_inflight', -1)} in flight at most; size {result['final_size']}"
                + (f"; {why}" if why else ""))
    return Observation(passed, "0 overlapping extending WRITEs", observed,
                       {"server": stats, "probe": result})


def case_integrity(ctx: CaseContext) -> Observation:
    block = 256 * 1024
    with FuseMount(ctx.guest, ServerOptions(delay_write_us=50_000), name="case") as m:
        result = probe(ctx.guest, "pwrite", file=f"{m.path}/d", writers=WRITERS, block=block,
                       base=0, presize=WRITERS * block, verify=True)
    ok, why = _writers_ok(result, block)
    passed = ok and result["verify_ok"] and result["final_size"] == WRITERS * block
    observed = (f"verify {'ok' if result['verify_ok'] else 'FAILED'}, "
                f"{len(result['bad_blocks'])} bad blocks, size {result['final_size']}"
                + (f"; {why}" if why else ""))
    return Observation(passed, "every byte as written", observed, {"probe": result})


def case_short_write(ctx: CaseContext) -> Observation:
    short = 4096
    with FuseMount(ctx.guest, ServerOptions(short_write=short), name="case") as m:
        result = probe(ctx.guest, "pwrite", file=f"{m.path}/s", writers=1, block=BLOCK, base=0)
    ret = result["writers"][0]["ret"]
    passed = ret == short and result["final_size"] == short
    return Observation(passed, f"write returns {short}, size {short}",
                       f"write returned {ret}, size {result['final_size']}", {"probe": result})


def case_server_errors(ctx: CaseContext) -> Observation:
    writers, every = 6, 3
    options = ServerOptions(fail_write_every=every, fail_write_errno="ENOSPC",
                            delay_write_us=20_000)
    with FuseMount(ctx.guest, options, name="case") as m:
        result = probe(ctx.guest, "pwrite", file=f"{m.path}/e", writers=writers, block=BLOCK,
                       base=0)
    failed = [w for w in result["writers"] if w["ret"] < 0]
    wrong = [w for w in failed if w.get("errno_name") != "ENOSPC"]
    good = [w for w in result["writers"] if w["ret"] == BLOCK]
    want_size = max((w["offset"] + BLOCK for w in good), default=0)
    passed = (len(failed) == writers // every and not wrong
              and len(good) == writers - len(failed) and result["final_size"] == want_size)
    names = ", ".join(sorted({str(w.get("errno_name")) for w in failed}))
    observed = (f"{len(failed)} writers failed ({names}), "
                f"{len(good)} succeeded, size {result['final_size']} (want {want_size})")
    return Observation(passed, f"{writers // every} fail with ENOSPC, size from the rest only",
                       observed, {"probe": result})


def case_async_io(ctx: CaseContext) -> Observation:
    """libaio and io_uring, iodepth 8, verified. Non-extending async direct
    writes drop the inode lock once submitted, so several are in flight even
    on the baseline: recorded, not asserted."""
    g = ctx.guest
    figures = {}
    passed = True
    notes = []
    for engine in ("libaio", "io_uring"):
        with FuseMount(g, ServerOptions(delay_write_us=20_000), name="case") as m:
            job = (f"[aio]\nfilename={m.path}/aio\nsize=4m\nbs=64k\nrw=randwrite\n"
                   f"ioengine={engine}\niodepth=8\ndirect=1\nverify=crc32c\ndo_verify=1\n"
                   "verify_fatal=1\n")
            g.run(f"cat > {REMOTE}/aio.fio <<'EOF'\n{job}EOF", check=True)
            g.run(["truncate", "-s", "4M", f"{m.path}/aio"], check=True)
            res = g.run(["fio", "--output-format=terse", f"{REMOTE}/aio.fio"], timeout=300)
        stats = m.file_stats("aio")
        figures[engine] = stats.get("max_inflight", -1)
        if not res.ok:
            passed = False
            notes.append(f"{engine}: fio exit {res.exit_status}: {res.tail(3)}")
    observed = ", ".join(f"{e}: {n} in flight" for e, n in figures.items())
    if notes:
        observed += "; " + "; ".join(notes)
    return Observation(passed, "complete and verify (in-flight count recorded)", observed,
                       {"max_inflight": figures})


def case_mixed(ctx: CaseContext) -> Observation:
    with FuseMount(ctx.guest, ServerOptions(direct_io=False), name="case") as m:
        result = probe(ctx.guest, "mixed", file=f"{m.path}/m", size=1024 * 1024, block=BLOCK)
    return Observation(bool(result["ok"]), "readers see the data written",
                       "ok" if result["ok"] else f"mismatches: {result.get('mismatches')}",
                       {"probe": result})


def case_server_death(ctx: CaseContext) -> Observation:
    g = ctx.guest
    out = "/run/lab-death.json"
    m = FuseMount(g, ServerOptions(delay_write_us=2_000_000), name="case")
    with m:
        pid = g.run(
            f"{REMOTE}/bin/labprobe write-until-error --file={m.path}/k --writers=4 "
            f"--block={BLOCK} --count=50 --presize={4 * 50 * BLOCK} > {out} 2>&1 & echo $!",
            check=True).stdout.strip()
        time.sleep(1.0)
        g.run(f"kill -9 {m.pid()}", check=True)
        # The writers must come back on their own; give them 30 s (scaled).
        waited = g.run(f"for i in $(seq 300); do kill -0 {pid} 2>/dev/null || exit 0; "
                       "sleep 0.1; done; exit 1", timeout=60)
        if not waited.ok:
            g.run(f"kill -9 {pid}")
        g.run(f"umount -l {m.path}", timeout=30)
    result = probe_output(g, out)
    errs = sorted({str(w.get("first_errno_name")) for w in result.get("writers", [])})
    hung = not waited.ok
    passed = not hung and bool(result.get("writers")) and all(
        w.get("first_errno_name") in ("ENOTCONN", "ECONNABORTED", "EIO")
        for w in result["writers"])
    return Observation(passed, "writers fail with ENOTCONN, nothing hangs",
                       f"{'writers hung' if hung else 'writers returned'}: {', '.join(errs)}",
                       {"probe": result})


def probe_output(guest: Guest, path: str) -> dict[str, Any]:
    text = guest.run(["cat", path]).stdout
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text[-2000:]}


CASES: tuple[Case, ...] = (
    Case(1, "parallel-nonextending", "N writers inside a pre-sized file",
         case_parallel_nonextending),
    Case(2, "flag-off", "server does not set the flag", case_flag_off),
    Case(3, "cached-odirect", "O_DIRECT on a cached open", case_cached_odirect),
    Case(4, "extending", "extending and EOF-crossing writes", case_extending),
    Case(5, "eof-exact", "writes ending exactly at EOF", case_eof_exact),
    Case(6, "append", "O_APPEND writers", case_append),
    Case(7, "truncate-race", "shrinking truncate racing writers", case_truncate_race),
    Case(8, "integrity", "data integrity on the real backing store", case_integrity),
    Case(9, "short-write", "short writes from the server", case_short_write),
    Case(10, "server-errors", "ENOSPC from the server on some writes", case_server_errors),
    Case(11, "async-io", "libaio and io_uring direct writes", case_async_io),
    Case(12, "mixed", "buffered and direct access mixed", case_mixed),
    Case(13, "server-death", "the server dies mid-write", case_server_death),
)


def select(expr: str | None) -> list[Case]:
    """Cases whose name contains `expr` (any of comma-separated parts), like -k."""
    if not expr:
        return list(CASES)
    parts = [p.strip() for p in expr.split(",") if p.strip()]
    chosen = [c for c in CASES if any(p in c.name or p == str(c.number) for p in parts)]
    if not chosen:
        raise ConfigError(f"no case matches {expr!r}; cases: {', '.join(c.name for c in CASES)}")
    return chosen


def health(guest: Guest, console_trouble: Sequence[console.Trouble]) -> tuple[bool, str, str]:
    """No kernel report on the console since the last look, nor in dmesg."""
    dmesg = guest.run("dmesg -c", timeout=30).stdout
    reports = list(console_trouble) + console.find_trouble(dmesg)
    if not reports:
        return True, "", ""
    first = reports[0]
    return False, f"kernel {first.kind}: {first.line}", first.excerpt


def run_case(case: Case, guest: Guest, variant: str, features: tuple[str, ...],
             repeat: int = 1) -> CheckResult:
    """Run one case (repeat times) and judge it; kernel reports fail the case."""
    start = time.monotonic()
    observations = []
    error = ""
    for _ in range(repeat):
        try:
            observations.append(case.run(CaseContext(guest, features)))
        except GuestError as exc:
            error = exc.describe()
            break
    ok, trouble, excerpt = health(guest, guest.machine.new_trouble())
    if error:
        # The guest itself failed (a crash is the most useful thing to show).
        guest.machine.check_alive(f"during case {case.name}")
        raise LabError(f"case {case.name} could not run: {error}")
    last = observations[-1]
    passed = all(o.passed for o in observations) and ok
    observed = last.observed if ok else f"{last.observed}; {trouble}"
    if repeat > 1:
        fails = sum(not o.passed for o in observations)
        observed += f" ({repeat - fails}/{repeat} runs passed)"
    return CheckResult(
        name=case.name,
        variant=variant,
        passed=passed,
        expected=last.expected + ("" if ok else "; no kernel reports"),
        observed=observed,
        details={"number": case.number, "title": case.title, **last.details},
        duration_s=time.monotonic() - start,
        console_excerpt=excerpt,
    )
