"""The regression and concurrency suite, as data, and its runner.

Every case drives real I/O in the guest and judges the kernel by what our
FUSE server observed (WRITEs in flight, extending WRITEs overlapping others,
attributes) and by what the writers got back. Expectations follow what the
variant claims (its features), so one suite judges the baseline, every
version of a series and a user's patch. Overlap is deterministic by
construction: the server holds each WRITE (or SETATTR) far longer than the
writers need to reach it, so "could run in parallel" always shows as "did".

The cases are organised by the inputs of the direct-write lock decision
(fuse_direct_write_iter and, since 6.9, fuse_dio_wr_exclusive_lock and
fuse_dio_lock): the server's flag, O_APPEND, where a write starts and ends
relative to EOF, plain and O_DIRECT fds, sync and async submission, the
re-check after a racing truncate, the early-exit and error paths, lock/unlock
pairing and the attributes other processes see. Each input has a case in
which getting it wrong changes the verdict (`lab mutate` measures that).
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from typing import Any

from lab.errors import ConfigError
from lab.guest import records
from lab.guest.records import ProbeResult
from lab.guest.workloads import REMOTE, FuseMount, ServerOptions, probe, probe_argv
from lab.suite.fsx import case_fsx
from lab.suite.spec import (
    BLOCK,
    HOLD_US,
    PATTERN_TAG_1,
    WRITERS,
    Case,
    CaseContext,
    Observation,
)
from lab.vm.ssh import Guest


def _record(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _writers_ok(result: ProbeResult, length: int) -> tuple[bool, str]:
    bad = result.wrong_returns(length)
    if not bad:
        return True, ""
    first = bad[0]
    return False, f"writer {first.index} got {first.ret} ({first.errno_name})"


def _pwrite(ctx: CaseContext, path: str, **options: Any) -> ProbeResult:
    return records.parse_probe(probe(ctx.guest, "pwrite", file=path, **options),
                                 "labprobe pwrite")


def _inflight_case(ctx: CaseContext, options: ServerOptions, want_parallel: bool, *,
                   base: int = 0, stride: int = BLOCK, direct: bool = False,
                   name: str = "f") -> Observation:
    """N writers released together; count how many WRITEs the server held at once."""
    with ctx.mount(options) as m:
        result = _pwrite(ctx, f"{m.path}/{name}", writers=WRITERS, block=BLOCK, base=base,
                         stride=stride, presize=WRITERS * BLOCK, direct=direct)
    stats = m.file_stats(name)
    want = WRITERS if want_parallel else 1
    ok, why = _writers_ok(result, BLOCK)
    observed = f"{stats.max_inflight} of {WRITERS} WRITEs in flight" + (f"; {why}" if why else "")
    return Observation(ok and stats.max_inflight == want, f"{want} in flight", observed,
                       {"server": _record(stats), "final_size": result.final_size})


# --- the server's flag, the kind of fd, the kind of open ----------------------------


def case_parallel_nonextending(ctx: CaseContext) -> Observation:
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US), ctx.parallel)


def case_parallel_odirect(ctx: CaseContext) -> Observation:
    # O_DIRECT fds on a direct-io open take the same path as plain ones.
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US), ctx.parallel,
                          direct=True)


def case_dsync(ctx: CaseContext) -> Observation:
    """Non-extending writers asking for synchronous data, per call (pwritev2
    RWF_DSYNC) and per open (O_DSYNC): the caller's sync flags are no input of
    the lock choice, so as many run at once as the variant claims."""
    want = WRITERS if ctx.parallel else 1
    problems: list[str] = []
    seen: list[int] = []
    with ctx.mount(ServerOptions(delay_write_us=HOLD_US)) as m:
        for name, flags in (("d-rwf", {"rwf_dsync": True}), ("d-open", {"odsync": True})):
            result = _pwrite(ctx, f"{m.path}/{name}", writers=WRITERS, block=BLOCK, base=0,
                             presize=WRITERS * BLOCK, **flags)
            ok, why = _writers_ok(result, BLOCK)
            if not ok:
                problems.append(f"{name}: {why}")
    for name, how in (("d-rwf", "RWF_DSYNC"), ("d-open", "O_DSYNC")):
        n = m.file_stats(name).max_inflight
        seen.append(n)
        if n != want:
            problems.append(f"{how}: {n} of {WRITERS} in flight")
    observed = (f"{seen[0]} (RWF_DSYNC) and {seen[1]} (O_DSYNC) of {WRITERS} WRITEs in flight"
                + "".join(f"; {p}" for p in problems))
    return Observation(not problems, f"{want} in flight with either", observed,
                       {"max_inflight": seen})


def case_flag_off(ctx: CaseContext) -> Observation:
    return _inflight_case(
        ctx, ServerOptions(delay_write_us=HOLD_US, parallel_direct_writes=False), False)


def case_cached_odirect(ctx: CaseContext) -> Observation:
    # O_DIRECT on a page-cache open takes the generic direct-IO path under
    # the exclusive lock, whatever the server's flag says: labfs sends
    # FOPEN_PARALLEL_DIRECT_WRITES on this open without FOPEN_DIRECT_IO.
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US, direct_io=False), False,
                          direct=True)


def case_cached_open(ctx: CaseContext) -> Observation:
    """Parallel direct writers while another process holds a page-cache open
    of the same file. With inode I/O modes (6.9+) the caching open makes
    every direct write exclusive; before them, the writers' own opens decide."""
    g = ctx.guest
    options = ServerOptions(delay_write_us=HOLD_US, cached_readers=True)
    with ctx.mount(options) as m:
        f = f"{m.path}/c"
        g.run(["truncate", "-s", str(WRITERS * BLOCK), f], check=True)
        holder = g.run(f"sh -c 'exec 3<{f}; exec sleep 600' >/dev/null 2>&1 & echo $!",
                       check=True).stdout.strip()
        held = g.run(f"for i in $(seq 100); do [ -e /proc/{holder}/fd/3 ] && exit 0; "
                     "sleep 0.1; done; exit 1", timeout=30).ok
        result = _pwrite(ctx, f, writers=WRITERS, block=BLOCK, base=0)
        g.run(["kill", holder], timeout=30)
    stats = m.file_stats("c")
    want = WRITERS if ctx.parallel and not ctx.iomodes else 1
    ok, why = _writers_ok(result, BLOCK)
    waiting, details = _open_waiting(ctx)
    truncating, trunc_details = _truncating_open(ctx)
    problems = waiting + truncating
    observed = (f"{stats.max_inflight} of {WRITERS} WRITEs in flight with a cached open held"
                + ("" if held else "; INCONCLUSIVE: the cached open was not held")
                + (f"; {why}" if why else "") + "".join(f"; {p}" for p in problems))
    return Observation(ok and held and stats.max_inflight == want and not problems,
                       f"{want} in flight, also while a cached open waits; writers behind a "
                       "truncating open: one at a time, no hang", observed,
                       {"server": _record(stats), "open waiting": details,
                        "truncating open": trunc_details})


# (label, labprobe's options for the writers): a caching open that waits for
# parallel writers to drain, as writes begin on plain fds, O_DIRECT fds and
# with RWF_DSYNC (how the caller asked is no input of the caching-mode test).
_OPEN_WAITING_ROUNDS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("plain fds", {}), ("O_DIRECT fds", {"direct": True}), ("RWF_DSYNC", {"rwf_dsync": True}))
OPEN_WAITING_WRITERS = 3


def _open_waiting(ctx: CaseContext) -> tuple[list[str], dict[str, Any]]:
    """Writer 0's WRITE is held by the server; then a page-cache open of the
    file is made, and writers 1.. begin only once it waits in the kernel (from
    6.9 it waits for the parallel writers in flight to drain, having marked
    the inode so that new direct writes take the exclusive lock: without the
    mark a stream of writers could keep the open waiting for ever). So on an
    I/O-modes kernel none of writers 1.. may overlap writer 0; before 6.9 the
    open neither waits nor changes the lock choice."""
    n = OPEN_WAITING_WRITERS
    want = n if ctx.parallel and not ctx.iomodes else 1
    must_wait = ctx.parallel and ctx.iomodes
    problems: list[str] = []
    details: dict[str, Any] = {}
    options = ServerOptions(delay_write_us=EXTENDING_HOLD_US, cached_readers=True,
                            arrivals=True)
    with ctx.mount(options) as m:
        results = {label: _pwrite(ctx, f"{m.path}/w{i}", writers=n, block=BLOCK, base=0,
                                  presize=n * BLOCK, gate=m.arrivals, gate_after=1,
                                  gate_open=True, **flags)
                   for i, (label, flags) in enumerate(_OPEN_WAITING_ROUNDS)}
    for i, (label, _flags) in enumerate(_OPEN_WAITING_ROUNDS):
        result, stats = results[label], m.file_stats(f"w{i}")
        opened = result.gate.open if result.gate else None
        details[label] = {"server": _record(stats), "open": _record(opened) if opened else None}
        ok, why = _writers_ok(result, BLOCK)
        if result.gate is None or result.gate.timed_out or opened is None:
            problems.append(f"open waiting, {label}: INCONCLUSIVE: the server never held "
                            "writer 0's WRITE")
            continue
        held_until = result.writers[0].end_ms
        if opened.errno_name:
            problems.append(f"open waiting, {label}: the cached open failed: "
                            f"{opened.errno_name}")
        elif must_wait and (opened.start_ms >= held_until or
                            opened.blocked and opened.blocked_ms >= held_until):
            # The open came, or was seen waiting, only once writer 0 was done:
            # the question was not asked (a slow guest, not the kernel).
            problems.append(f"open waiting, {label}: INCONCLUSIVE: the cached open came after "
                            "writer 0's WRITE was done")
            continue
        elif must_wait and not opened.blocked:
            problems.append(f"open waiting, {label}: the cached open did not wait for "
                            "writer 0's parallel WRITE to drain")
        if not ok:
            problems.append(f"open waiting, {label}: {why}")
        if stats.max_inflight != want:
            problems.append(f"open waiting, {label}: {stats.max_inflight} of {n} WRITEs in "
                            f"flight (want {want})")
    return problems, details


TRUNC_OPEN_WRITERS = 2


def _truncating_open(ctx: CaseContext) -> tuple[list[str], dict[str, Any]]:
    """Under writeback caching a truncating page-cache open holds the inode
    lock while the server answers it. Direct writers made ready inside the
    file begin while the server holds that open: they wait for the lock, then
    find the file empty, so their writes now extend it and must go alone (the
    re-check of EOF under the shared lock; from 6.9 the caching open, still
    held, makes them exclusive too). From 6.9 the open also switches the inode
    to caching I/O mode before it drops the lock, waiting for uncached writes
    in flight to drain: a writer that
    counted itself uncached before taking the lock would wait for the opener
    while the opener waits for it (a hang, which the lab reports with the
    kernel's hung-task evidence). The same on every generation.

    The file's size afterwards is not judged: the VFS truncates i_size again
    after ->open and before open(2) returns (ATTR_OPEN, which the server is
    not asked about under atomic O_TRUNC), so on a kernel whose writers keep the lock
    through their WRITE the kernel says 0 bytes where the server holds them:
    upstream's behaviour on every generation, and not this feature's."""
    n = TRUNC_OPEN_WRITERS
    hold_us = EXTENDING_HOLD_US
    problems: list[str] = []
    options = ServerOptions(delay_write_us=HOLD_US, writeback_cache=True,
                            hold_trunc_open_us=hold_us, arrivals=True)
    with ctx.mount(options) as m:
        result = _pwrite(ctx, f"{m.path}/t", writers=n, block=BLOCK, base=0,
                         presize=n * BLOCK, gate=m.arrivals, trunc_open=True)
    stats = m.file_stats("t")
    opened = result.trunc_open
    details = {"server": _record(stats), "open": _record(opened) if opened else None,
               "final_size": result.final_size}
    if opened is None or not opened.held:
        return ["truncating open: INCONCLUSIVE: the server never held it"
                + (f" ({opened.errno_name})" if opened and opened.errno_name else "")], details
    if opened.errno_name:
        return [f"truncating open: it failed: {opened.errno_name}"], details
    if opened.writers_blocked < n or opened.blocked_ms >= opened.held_ms + hold_us / 1000:
        # A writer seen waiting only once the server had answered the open
        # may never have met its lock (a slow guest, not the kernel).
        return [f"truncating open: INCONCLUSIVE: {opened.writers_blocked} of {n} writers were "
                "seen waiting, not all while the server held the open"], details
    ok, why = _writers_ok(result, BLOCK)
    if not ok:
        problems.append(f"truncating open: {why}")
    if stats.max_inflight != 1:
        problems.append(f"truncating open: {stats.max_inflight} of {n} WRITEs in flight after "
                        "it emptied the file (want 1: the writes extend it)")
    return problems, details


def case_mmap(ctx: CaseContext) -> Observation:
    """Parallel direct writers while another fd maps the file. A direct-io open
    refuses a shared mapping (labfs does not allow FUSE_DIRECT_IO_ALLOW_MMAP)
    and allows a private one, whose page is read from the server. A private
    mapping leaves the lock choice alone on every generation: from 6.9 only a
    shared one switches the inode to caching I/O mode."""
    size = WRITERS * BLOCK
    with ctx.mount(ServerOptions(delay_write_us=HOLD_US)) as m:
        # The server's copy gets labprobe's pattern (tag 1) straight in the backing
        # file, so the mapped page can only hold it if it came from the server.
        _pwrite(ctx, f"{m.backing}/m", writers=1, block=size)
        result = _pwrite(ctx, f"{m.path}/m", writers=WRITERS, block=BLOCK, base=0, mmap=True)
    stats = m.file_stats("m")
    mm = result.mmap
    want = WRITERS if ctx.parallel else 1
    ok, why = _writers_ok(result, BLOCK)
    problems = [why] if why else []
    if mm is None or mm.open_errno:
        problems.append(f"INCONCLUSIVE: the mapping fd did not open "
                        f"({mm.open_errno if mm else 'no mmap record'})")
    else:
        if mm.shared_errno != "ENODEV":
            problems.append(f"MAP_SHARED on a direct-io open: {mm.shared_errno or 'allowed'} "
                            "(want ENODEV)")
        if mm.private_errno:
            problems.append(f"MAP_PRIVATE failed: {mm.private_errno}")
        elif mm.first_word != PATTERN_TAG_1:
            problems.append(f"the mapped page holds {mm.first_word:#x}, not the server's "
                            f"{PATTERN_TAG_1:#x}")
    observed = (f"{stats.max_inflight} of {WRITERS} WRITEs in flight with a private mapping "
                "held" + "".join(f"; {p}" for p in problems))
    return Observation(not problems and stats.max_inflight == want,
                       f"{want} in flight; shared mapping ENODEV, private one from the server",
                       observed, {"server": _record(stats), "mmap": _record(mm) if mm else None})


# --- where a write starts and ends relative to EOF ---------------------------------


def case_eof_exact(ctx: CaseContext) -> Observation:
    # Every writer writes the last block: pos + len == i_size is not extending.
    last = (WRITERS - 1) * BLOCK
    return _inflight_case(ctx, ServerOptions(delay_write_us=HOLD_US), ctx.parallel,
                          base=last, stride=0)


# Extending writes, each entering the kernel while a non-extending writer's
# WRITE is held by the server (the held one holds the inode lock shared on a
# parallel kernel). The order is set by construction (labprobe --gate waits
# for the server to hold writer 0's WRITE before writer 1 starts), so no
# round depends on which thread wins a race: an extending write that takes
# the shared lock always overlaps the held WRITE, a correct one never does.
# (name, writer 1's offset, length, --segments, file size before)
_EXTENDING_ROUNDS = (
    ("across EOF", 4 * BLOCK, BLOCK, 1, 4 * BLOCK + BLOCK // 2),
    ("beyond EOF", 5 * BLOCK, BLOCK, 1, 4 * BLOCK + BLOCK // 2),
    # The first of 4 segments ends inside the file: the decision must use the
    # whole write's length.
    ("across EOF in 4 segments", 4 * BLOCK, BLOCK, 4, 4 * BLOCK + BLOCK // 2),
    # Unaligned: EOF and the write's end in one page; whole pages or blocks
    # would call it non-extending.
    ("across EOF within its page", 4 * BLOCK + 1000 - 500, 1000, 1, 4 * BLOCK + 1000),
)
EXTENDING_HOLD_US = 2 * HOLD_US


def case_extending(ctx: CaseContext) -> Observation:
    """Writes across and beyond EOF, in one or several segments, aligned or
    not, each started while a non-extending WRITE is held: none may overlap it."""
    problems: list[str] = []
    rounds: dict[str, Any] = {}
    options = ServerOptions(delay_write_us=EXTENDING_HOLD_US, arrivals=True)
    with ctx.mount(options) as m:
        for i, (label, at, length, segments, size) in enumerate(_EXTENDING_ROUNDS):
            result = _pwrite(ctx, f"{m.path}/e{i}", writers=2, block=length, base=0,
                             stride=at, presize=size, segments=segments, verify=True,
                             gate=m.arrivals, gate_after=1)
            rounds[label] = result
    for i, (label, at, length, _segments, _size) in enumerate(_EXTENDING_ROUNDS):
        result = rounds[label]
        stats = m.file_stats(f"e{i}")
        ok, why = _writers_ok(result, length)
        want_size = at + length
        if result.gate is None or result.gate.timed_out:
            problems.append(f"{label}: INCONCLUSIVE: the server never held writer 0's WRITE")
        if stats.extending_writes < 1:
            problems.append(f"{label}: INCONCLUSIVE: no extending WRITE reached the server")
        if stats.max_extending_overlap:
            problems.append(f"{label}: the extending WRITE overlapped the held one")
        if not ok:
            problems.append(f"{label}: {why}")
        if result.final_size != want_size or not result.verify_ok:
            problems.append(f"{label}: size {result.final_size} (want {want_size})"
                            + ("" if result.verify_ok else ", content wrong"))
    observed = "; ".join(problems) or (f"{len(_EXTENDING_ROUNDS)} rounds: no extending WRITE "
                                       "overlapped a held one, sizes and content exact")
    return Observation(not problems, "0 overlapping in every round, size and content exact",
                       observed, {label: _record(r) for label, r in rounds.items()})


def case_unaligned(ctx: CaseContext) -> Observation:
    """Parallel writers with sizes and offsets that are multiples of neither
    the block nor the page, in a file whose size ends mid-page: the last
    writer ends one byte before EOF, then exactly at it. Neither round extends
    the file, so as many run at once as the variant claims."""
    block, base = 5000, 100
    want = WRITERS if ctx.parallel else 1
    problems: list[str] = []
    seen: list[int] = []
    with ctx.mount(ServerOptions(delay_write_us=HOLD_US)) as m:
        for name, size in (("u1", base + WRITERS * block + 1), ("u0", base + WRITERS * block)):
            result = _pwrite(ctx, f"{m.path}/{name}", writers=WRITERS, block=block, base=base,
                             presize=size, verify=True)
            ok, why = _writers_ok(result, block)
            if not ok:
                problems.append(f"{name}: {why}")
            if result.final_size != size or not result.verify_ok:
                problems.append(f"{name}: size {result.final_size} (want {size})"
                                + ("" if result.verify_ok else ", content wrong"))
    for name in ("u1", "u0"):
        stats = m.file_stats(name)
        seen.append(stats.max_inflight)
        if stats.max_inflight != want:
            problems.append(f"{'1 byte before' if name == 'u1' else 'exactly at'} EOF: "
                            f"{stats.max_inflight} of {WRITERS} in flight")
    observed = (f"{seen[0]} and {seen[1]} of {WRITERS} WRITEs in flight"
                + "".join(f"; {p}" for p in problems))
    return Observation(not problems, f"{want} in flight in both rounds, content exact",
                       observed, {"max_inflight": seen})


# --- O_APPEND ------------------------------------------------------------------------


def _append_counts(result: records.AppendResult) -> str:
    return (f"{result.records_found}/{result.records_expected} records, "
            f"{result.duplicates} duplicated, {result.missing} missing, "
            f"{result.torn} torn, size {result.final_size}/{result.expected_size}")


def _append_case(ctx: CaseContext, *, stale: bool, rwf: bool = False) -> Observation:
    writers, count, record = 4, 8, 512
    head = 16 * BLOCK if stale or rwf else 0
    with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
        result = records.parse_append(probe(
            ctx.guest, "append", file=f"{m.path}/a", writers=writers, records=count,
            record=record, presize=head or None, stale=stale, rwf_append=rwf, timeout=300))
    stats = m.file_stats("a")
    passed = result.ok and stats.max_inflight == 1
    observed = f"{_append_counts(result)}, {stats.max_inflight} appends in flight"
    return Observation(passed, "every record once, size exact, 1 in flight", observed,
                       {"server": _record(stats), "probe": _record(result)})


def case_append(ctx: CaseContext) -> Observation:
    return _append_case(ctx, stale=False)


def case_append_stale(ctx: CaseContext) -> Observation:
    """Appenders whose file position lies inside the file (a pwrite at 0 on an
    O_APPEND fd): before the lock, every append looks non-extending, so only
    the O_APPEND flag itself can make the kernel take the exclusive lock."""
    return _append_case(ctx, stale=True)


def case_rwf_append(ctx: CaseContext) -> Observation:
    """Appends asked per call (pwritev2 with RWF_APPEND) on fds opened without
    O_APPEND, in a file that already has data: the kiocb's IOCB_APPEND, not
    the open's flags, must make the kernel take the exclusive lock."""
    return _append_case(ctx, stale=False, rwf=True)


# --- the caller's own flags on writes that must be exclusive ----------------------------

# Per call (pwritev2's RWF_DSYNC) and per open (O_DSYNC, O_DIRECT): what the
# caller asks of a write's durability or caching is no input of the lock
# choice. A kernel that reads one of them where it decides (`&& !(ki_flags &
# IOCB_DSYNC)` beside a condition) lets such writes run at once where the
# condition says they may not.
_CALLER_FLAGS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("RWF_DSYNC", {"rwf_dsync": True}),
    ("O_DSYNC", {"odsync": True}),
    ("O_DIRECT", {"direct": True}),
)
# Appends whose position lies inside the file, so only the append flag makes
# them exclusive: O_APPEND with a sync or direct open, RWF_APPEND with RWF_DSYNC.
_APPEND_FLAGS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("O_APPEND|O_DSYNC", {"stale": True, "odsync": True}),
    ("O_APPEND|O_DIRECT", {"stale": True, "direct": True}),
    ("RWF_APPEND|RWF_DSYNC", {"rwf_append": True, "rwf_dsync": True}),
)


def case_caller_flags(ctx: CaseContext) -> Observation:
    """Writes that must take the exclusive lock, carrying the caller's sync and
    direct flags: non-extending writers on a server without the flag, and
    appenders whose position lies inside the file. One in flight every time."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    off = ServerOptions(delay_write_us=HOLD_US, parallel_direct_writes=False)
    with ctx.mount(off) as m:
        for i, (label, flags) in enumerate(_CALLER_FLAGS):
            result = _pwrite(ctx, f"{m.path}/k{i}", writers=WRITERS, block=BLOCK, base=0,
                             presize=WRITERS * BLOCK, **flags)
            ok, why = _writers_ok(result, BLOCK)
            if not ok:
                problems.append(f"flag off, {label}: {why}")
    for i, (label, _flags) in enumerate(_CALLER_FLAGS):
        seen[f"flag off, {label}"] = m.file_stats(f"k{i}").max_inflight
    with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
        for i, (label, flags) in enumerate(_APPEND_FLAGS):
            result = records.parse_append(probe(
                ctx.guest, "append", file=f"{m.path}/a{i}", writers=4, records=8, record=512,
                presize=16 * BLOCK, timeout=300, **flags))
            if not result.ok:
                problems.append(f"{label}: {_append_counts(result)}")
    for i, (label, _flags) in enumerate(_APPEND_FLAGS):
        seen[label] = m.file_stats(f"a{i}").max_inflight
    problems += [f"{label}: {n} in flight" for label, n in seen.items() if n != 1]
    observed = "; ".join(problems) or (f"{len(seen)} rounds, 1 in flight in each, "
                                       "appends exact")
    return Observation(not problems, "1 in flight in every round, appends exact", observed,
                       {"max_inflight": seen})


# --- the re-check after a racing truncate -------------------------------------------


def case_truncate_race(ctx: CaseContext) -> Observation:
    """Writers decide their lock while a delayed SETATTR holds the inode lock
    and i_size is still large; once the truncate lands their writes extend
    the file and must not run alongside each other. Three rounds: plain fds,
    O_DIRECT fds, RWF_DSYNC writes (the caller's flags are no input of the
    re-check under the shared lock).

    The case checks its own preconditions: the truncate succeeded, the writers
    were released (and entered the kernel) before it finished, and their writes
    extended the file after it. Otherwise it proves nothing: inconclusive,
    which is never a pass."""
    options = ServerOptions(delay_write_us=200_000, delay_setattr_us=1_500_000)
    rounds: tuple[tuple[str, str, dict[str, bool]], ...] = (
        ("plain fds", "t", {}), ("O_DIRECT fds", "t-direct", {"direct": True}),
        ("RWF_DSYNC writes", "t-dsync", {"rwf_dsync": True}))
    races = {}
    with ctx.mount(options) as m:
        for label, name, flags in rounds:
            races[label] = records.parse_truncate_race(probe(
                ctx.guest, "truncate-race", file=f"{m.path}/{name}", writers=WRITERS,
                block=BLOCK, presize=WRITERS * BLOCK, truncate_to=0, writer_delay_ms=400,
                timeout=300, **flags))
    parts, details, passed = [], {}, True
    for label, name, _flags in rounds:
        race, stats = races[label], m.file_stats(name)
        result = race.probe
        ok, why = _writers_ok(result, BLOCK)
        unmet = []
        if race.truncate_ret != 0:
            unmet.append("the truncate failed")
        if race.writers_released_ms >= race.truncate_end_ms or any(
                w.start_ms >= race.truncate_end_ms for w in result.writers):
            unmet.append("writers entered after the truncate finished")
        # Which writes extend depends on the order they land in; at least one
        # must (the truncate came first) and together they restore the size.
        if result.final_size != WRITERS * BLOCK or stats.extending_writes < 1:
            unmet.append(f"the writes did not extend the file after the truncate "
                         f"({stats.extending_writes} extending, size {result.final_size})")
        passed = passed and ok and not unmet and stats.max_extending_overlap == 0
        parts.append(f"{label}: {stats.max_extending_overlap} extending WRITEs overlapped "
                     f"others after the truncate; {stats.max_inflight} in flight at most; "
                     f"size {result.final_size}" + (f"; {why}" if why else "")
                     + (f"; INCONCLUSIVE: {', '.join(unmet)}" if unmet else ""))
        details[label] = {"server": _record(stats), "probe": _record(race)}
    return Observation(passed, "0 overlapping extending WRITEs in every round (preconditions "
                       "met)", "; ".join(parts), details)


# --- data and attributes --------------------------------------------------------------


def case_integrity(ctx: CaseContext) -> Observation:
    block = 256 * 1024
    with ctx.mount(ServerOptions(delay_write_us=50_000)) as m:
        result = _pwrite(ctx, f"{m.path}/d", writers=WRITERS, block=block, base=0,
                         presize=WRITERS * block, verify=True)
    ok, why = _writers_ok(result, block)
    passed = ok and bool(result.verify_ok) and result.final_size == WRITERS * block
    observed = (f"verify {'ok' if result.verify_ok else 'FAILED'}, "
                f"{len(result.bad_blocks)} bad blocks, size {result.final_size}"
                + (f"; {why}" if why else ""))
    return Observation(passed, "every byte as written", observed, {"probe": _record(result)})


def _stat(guest: Guest, path: str) -> tuple[int, str]:
    """Size and mtime as another process sees them (stat(1), not the writer)."""
    out = guest.run(["stat", "-c", "%s %.9Y", path], timeout=30, check=True).stdout.split()
    return int(out[0]), out[1]


def case_attributes(ctx: CaseContext) -> Observation:
    """The size and mtime another process sees after parallel (shared-lock)
    and extending (exclusive) direct writes. The server lets the kernel
    cache attributes for a minute, so a fresh value can only come from the
    kernel invalidating its cache after each write."""
    g = ctx.guest
    size = WRITERS * BLOCK
    options = ServerOptions(delay_write_us=HOLD_US // 4, attr_timeout_s=60)
    with ctx.mount(options) as m:
        f = f"{m.path}/attr"
        g.run(["truncate", "-s", str(size), f], check=True)
        size0, mtime0 = _stat(g, f)
        inside = _pwrite(ctx, f, writers=WRITERS, block=BLOCK, base=0)
        size1, mtime1 = _stat(g, f)
        beyond = _pwrite(ctx, f, writers=WRITERS, block=BLOCK, base=size)
        size2, mtime2 = _stat(g, f)
    ok1, why1 = _writers_ok(inside, BLOCK)
    ok2, why2 = _writers_ok(beyond, BLOCK)
    problems = [why for why in (why1, why2) if why]
    if size1 != size:
        problems.append(f"size {size1} after writes inside the file (want {size})")
    if not mtime1 > mtime0:
        problems.append(f"mtime did not advance after writes inside the file ({mtime0})")
    if size2 != 2 * size:
        problems.append(f"size {size2} after extending writes (want {2 * size})")
    if not mtime2 > mtime1:
        problems.append(f"mtime did not advance after extending writes ({mtime1})")
    passed = ok1 and ok2 and not problems
    observed = (f"size {size0} -> {size1} -> {size2}; mtime advanced "
                f"{mtime1 > mtime0}/{mtime2 > mtime1}" + (f"; {'; '.join(problems)}"
                                                          if problems else ""))
    return Observation(passed, "another process sees the new size and mtime", observed,
                       {"stat": [[size0, mtime0], [size1, mtime1], [size2, mtime2]]})


# --- early exits and error paths -------------------------------------------------------


def _released_round(ctx: CaseContext, m: FuseMount, name: str) -> tuple[bool, str]:
    """One more round of writers inside and beyond EOF on the same file: if an
    earlier path left the inode lock held (or unlocked it as the wrong kind),
    this hangs or warns, and the case fails with the kernel's evidence."""
    result = _pwrite(ctx, f"{m.path}/{name}", writers=WRITERS, block=BLOCK, base=0)
    return _writers_ok(result, BLOCK)


def case_zero_length(ctx: CaseContext) -> Observation:
    """Zero-length writes inside the file (shared path) and beyond EOF
    (exclusive path) return 0 without a WRITE reaching the server."""
    size = WRITERS * BLOCK
    with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
        inside = _pwrite(ctx, f"{m.path}/z", writers=WRITERS, block=0, stride=BLOCK,
                         presize=size)
        beyond = _pwrite(ctx, f"{m.path}/z", writers=WRITERS, block=0, stride=BLOCK,
                         base=2 * size)
        counters = m.snapshot().file("z")
        after_ok, why = _released_round(ctx, m, "z")
    rets = [w.ret for w in (*inside.writers, *beyond.writers)]
    passed = (all(r == 0 for r in rets) and counters.writes == 0
              and beyond.final_size == size and after_ok)
    observed = (f"returns {sorted(set(rets))}, {counters.writes} WRITEs reached the server, "
                f"size {beyond.final_size}" + (f"; then {why}" if why else ""))
    return Observation(passed, f"0 returned, 0 WRITEs, size {size}, later writes fine",
                       observed, {"server_before_round": _record(counters)})


def case_efbig(ctx: CaseContext) -> Observation:
    """RLIMIT_FSIZE cuts writes on both paths: inside a larger file (shared
    lock) and extending an empty one (exclusive). Writes past the limit fail
    with EFBIG, the one crossing it comes back short, and the lock is
    released on the error path (a later round of writers runs)."""
    limit = 4 * BLOCK
    base = BLOCK // 2  # writer 3 crosses the limit, writers 4.. start past it
    want = [BLOCK] * 3 + [limit - (base + 3 * BLOCK)] + [-1] * (WRITERS - 4)
    with ctx.mount(ServerOptions(delay_write_us=HOLD_US // 2)) as m:
        shared = _pwrite(ctx, f"{m.path}/s", writers=WRITERS, block=BLOCK, base=base,
                         presize=4 * limit, rlimit_fsize=limit)
        excl = _pwrite(ctx, f"{m.path}/x", writers=WRITERS, block=BLOCK, base=base,
                       rlimit_fsize=limit)
        after_ok, why = _released_round(ctx, m, "s")
    problems = []
    for label, res, size in (("inside", shared, 4 * limit), ("extending", excl, limit)):
        rets = [w.ret for w in res.writers]
        errs = {w.errno_name for w in res.writers if w.ret < 0}
        if rets != want or errs - {"EFBIG"}:
            problems.append(f"{label}: returns {rets} ({', '.join(sorted(map(str, errs)))})")
        if res.final_size != size:
            problems.append(f"{label}: size {res.final_size} (want {size})")
    if not after_ok:
        problems.append(f"then {why}")
    return Observation(not problems, "EFBIG past the limit, short across it, on both paths",
                       "; ".join(problems) or "as expected on both paths",
                       {"inside": _record(shared), "extending": _record(excl)})


def case_short_write(ctx: CaseContext) -> Observation:
    short = 4096
    with ctx.mount(ServerOptions(short_write=short)) as m:
        result = _pwrite(ctx, f"{m.path}/s", writers=1, block=BLOCK, base=0)
    ret = result.writers[0].ret
    passed = ret == short and result.final_size == short
    return Observation(passed, f"write returns {short}, size {short}",
                       f"write returned {ret}, size {result.final_size}",
                       {"probe": _record(result)})


def case_shared_short_write(ctx: CaseContext) -> Observation:
    """Short writes from the server on the shared path: each writer gets what
    the server took, the size stays, and they ran as the variant claims."""
    short = 4096
    options = ServerOptions(short_write=short, delay_write_us=HOLD_US)
    with ctx.mount(options) as m:
        result = _pwrite(ctx, f"{m.path}/s", writers=WRITERS, block=BLOCK, base=0,
                         presize=WRITERS * BLOCK)
    stats = m.file_stats("s")
    want = WRITERS if ctx.parallel else 1
    ok, why = _writers_ok(result, short)
    passed = ok and result.final_size == WRITERS * BLOCK and stats.max_inflight == want
    return Observation(passed, f"each write returns {short}, size unchanged, {want} in flight",
                       f"{stats.max_inflight} in flight, size {result.final_size}"
                       + (f"; {why}" if why else ""),
                       {"server": _record(stats), "probe": _record(result)})


def _server_errors(ctx: CaseContext, *, inside: bool, direct: bool = False,
                   aio: bool = False) -> Observation:
    writers, every = 6, 3
    options = ServerOptions(fail_write_every=every, fail_write_errno="ENOSPC",
                            delay_write_us=HOLD_US // 2 if inside else 20_000)
    size = writers * BLOCK
    with ctx.mount(options) as m:
        result = _pwrite(ctx, f"{m.path}/e", writers=writers, block=BLOCK, base=0,
                         presize=size if inside else None, direct=direct, aio=aio)
    stats = m.file_stats("e")
    failed = [w for w in result.writers if w.ret < 0]
    wrong = [w for w in failed if w.errno_name != "ENOSPC"]
    good = [w for w in result.writers if w.ret == BLOCK]
    if inside:
        want_size = size
    else:
        want_size = max((w.offset + BLOCK for w in good if w.offset is not None), default=0)
    want_inflight = (writers if ctx.parallel else 1) if inside else 1
    # A failed synchronous write leaves the file alone: no truncate (SETATTR)
    # may follow it (the asynchronous path's clean-up is not the sync path's).
    want_setattrs = 1 if inside else 0  # the presize
    passed = (len(failed) == writers // every and not wrong
              and len(good) == writers - len(failed) and result.final_size == want_size
              and stats.max_inflight == want_inflight and stats.setattrs == want_setattrs)
    names = ", ".join(sorted({str(w.errno_name) for w in failed}))
    observed = (f"{len(failed)} writers failed ({names}), {len(good)} succeeded, "
                f"size {result.final_size} (want {want_size}), {stats.max_inflight} in flight, "
                f"{stats.setattrs} SETATTR")
    return Observation(passed, f"{writers // every} fail with ENOSPC, size "
                       f"{'unchanged' if inside else 'from the rest only'}, "
                       f"{want_inflight} in flight", observed,
                       {"server": _record(stats), "probe": _record(result)})


def _failed_extending_write(ctx: CaseContext, *, direct: bool = False, aio: bool = False,
                            label: str = "", **flags: bool) -> tuple[list[str], dict[str, Any]]:
    """One writer extends the file block after block until the server fails
    its third WRITE, so the failed write surely extended the file: the path
    the kernel chose for it shows in a SETATTR after it. Only an asynchronous
    kiocb with IOCB_DIRECT takes the async path (fuse_direct_IO), whose
    clean-up truncates the file back (one SETATTR); every other write takes
    the sync path, which leaves the file alone. `flags` are the caller's own
    (rwf_append, rwf_dsync, odsync): none of them may change the path."""
    options = ServerOptions(fail_write_every=3, fail_write_errno="ENOSPC")
    with ctx.mount(options) as m:
        loop = records.parse_probe(
            probe(ctx.guest, "write-until-error", file=f"{m.path}/x", writers=1, block=BLOCK,
                  count=6, direct=direct, aio=aio, **flags), "labprobe write-until-error")
    stats = m.file_stats("x")
    want_setattrs = 1 if aio and direct else 0
    problems = []
    (w,) = loop.writers
    where = f"{label}: " if label else ""
    if (w.writes_ok, w.errno_name) != (2, "ENOSPC"):
        problems.append(f"{where}the extending writer wrote {w.writes_ok} blocks, then "
                        f"{w.errno_name or 'no error'} (want 2, then ENOSPC)")
    if loop.final_size != 2 * BLOCK:
        problems.append(f"{where}size {loop.final_size} after the failed extending write "
                        f"(want {2 * BLOCK})")
    if stats.setattrs != want_setattrs:
        problems.append(f"{where}{stats.setattrs} SETATTR after the failed extending write "
                        f"(want {want_setattrs}: "
                        f"{'the async path truncates' if want_setattrs else 'the sync path'})")
    return problems, {"server": _record(stats), "probe": _record(loop)}


# AIO on O_DIRECT fds: the async path, asked for with the caller's own flags,
# per call and per open; none of them is an input of the path's choice.
_ASYNC_PATH_FLAGS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("AIO on an O_DIRECT fd", {}),
    ("AIO on an O_DIRECT fd, RWF_APPEND", {"rwf_append": True}),
    ("AIO on an O_DIRECT fd, RWF_DSYNC", {"rwf_dsync": True}),
    ("AIO on an O_DIRECT|O_DSYNC fd", {"odsync": True}),
)


def _with_extending_failure(ctx: CaseContext, first: Observation, *, direct: bool = False,
                            aio: bool = False) -> Observation:
    problems, details = _failed_extending_write(ctx, direct=direct, aio=aio)
    return Observation(first.passed and not problems,
                       first.expected + "; a failed extending write truncates nothing",
                       first.observed + "".join(f"; {p}" for p in problems),
                       {**first.details, "extending": details})


def case_server_errors(ctx: CaseContext) -> Observation:
    return _server_errors(ctx, inside=False)


def case_shared_server_errors(ctx: CaseContext) -> Observation:
    return _server_errors(ctx, inside=True)


def case_odirect_server_errors(ctx: CaseContext) -> Observation:
    """Extending writes through O_DIRECT fds that the server fails: O_DIRECT
    sets IOCB_DIRECT, which decides between the sync and async paths."""
    return _with_extending_failure(ctx, _server_errors(ctx, inside=False, direct=True),
                                   direct=True)


# O_DIRECT toggled with fcntl(F_SETFL) on an AIO writer's fd while its write
# waits for the inode lock: (label, the fd's O_DIRECT at submission).
_FLIP_ROUNDS = (("O_DIRECT cleared while the AIO write waited", True),
                ("O_DIRECT set while the AIO write waited", False))


def _flipped_while_waiting(ctx: CaseContext, label: str, *,
                           direct: bool) -> tuple[list[str], dict[str, Any]]:
    """Writer 0 extends the empty file, its WRITE held by the server; writer
    1's AIO extending write blocks on the inode lock; O_DIRECT is then toggled
    on writer 1's fd and the server fails its WRITE. The kiocb's IOCB_DIRECT,
    fixed at submission, picks the path, not the fd's flags of the moment: the
    async path (whose clean-up truncates: one SETATTR) iff the fd had O_DIRECT
    when the write was submitted."""
    options = ServerOptions(delay_write_us=EXTENDING_HOLD_US, fail_write_every=2,
                            fail_write_errno="ENOSPC", arrivals=True)
    with ctx.mount(options) as m:
        result = _pwrite(ctx, f"{m.path}/flip", writers=2, block=BLOCK, base=0, direct=direct,
                         aio=True, gate=m.arrivals, gate_after=1, flip_direct=True)
    stats = m.file_stats("flip")
    want = 1 if direct else 0
    flip = result.gate.flip if result.gate else None
    problems: list[str] = []
    first, second = result.writers
    if result.gate is None or result.gate.timed_out or flip is None or not flip.blocked:
        problems.append(f"{label}: INCONCLUSIVE: writer 1 was never seen waiting for the lock")
    elif flip.flipped != 1:
        problems.append(f"{label}: INCONCLUSIVE: F_SETFL failed: {flip.errno_name}")
    elif flip.flipped_ms >= first.end_ms:
        # Seen waiting only once writer 0 was done: it may have been waiting
        # for its own reply, its path already chosen.
        problems.append(f"{label}: INCONCLUSIVE: the flip came after writer 0's WRITE was done")
    if first.ret != BLOCK:
        problems.append(f"{label}: writer 0 got {first.ret} ({first.errno_name})")
    if (second.ret, second.errno_name) != (-1, "ENOSPC"):
        problems.append(f"{label}: writer 1 got {second.ret} ({second.errno_name}), "
                        "want the server's ENOSPC")
    if result.final_size != BLOCK:
        problems.append(f"{label}: size {result.final_size} after the failed write "
                        f"(want {BLOCK})")
    if stats.setattrs != want:
        problems.append(f"{label}: {stats.setattrs} SETATTR after the failed write (want "
                        f"{want}: the path of the flags at submission, "
                        f"{'async' if direct else 'sync'})")
    return problems, {"server": _record(stats), "probe": _record(result)}


def case_aio_server_errors(ctx: CaseContext) -> Observation:
    """Extending writes submitted with native AIO on plain fds, failed by the
    server: the kiocb is asynchronous without IOCB_DIRECT, which must still
    take the synchronous path (the async one truncates after a failure). Then
    AIO on O_DIRECT fds, with and without the caller's append and sync flags:
    the async path, whose truncate after the failure the server sees."""
    first = _with_extending_failure(ctx, _server_errors(ctx, inside=False, aio=True), aio=True)
    problems: list[str] = []
    details: dict[str, Any] = {}
    for label, flags in _ASYNC_PATH_FLAGS:
        found, details[label] = _failed_extending_write(ctx, direct=True, aio=True,
                                                        label=label, **flags)
        problems += found
    for label, direct in _FLIP_ROUNDS:
        found, details[label] = _flipped_while_waiting(ctx, label, direct=direct)
        problems += found
    return Observation(first.passed and not problems,
                       first.expected + "; on O_DIRECT fds the async path's truncate, "
                       "whatever the caller's flags; the path of the fd's flags at "
                       "submission, not after",
                       first.observed + "".join(f"; {p}" for p in problems),
                       {**first.details, "async path": details})


def case_lock_pairing(ctx: CaseContext) -> Observation:
    """Shared-lock writers, exclusive-lock writers, a truncate (which takes the
    inode lock itself), then shared-lock writers again, on one file. A lock
    left held, or released as the wrong kind, hangs or warns here."""
    size = WRITERS * BLOCK
    with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
        f = f"{m.path}/p"
        rounds = [_pwrite(ctx, f, writers=WRITERS, block=BLOCK, base=0, presize=size),
                  _pwrite(ctx, f, writers=WRITERS, block=BLOCK, base=size)]
        ctx.guest.run(["truncate", "-s", str(size // 2), f], timeout=30, check=True)
        rounds.append(_pwrite(ctx, f, writers=WRITERS // 2, block=BLOCK, base=0))
    bad = [why for why in (_writers_ok(r, BLOCK)[1] for r in rounds) if why]
    final = rounds[-1].final_size
    passed = not bad and final == size // 2
    return Observation(passed, "every round completes, size as truncated",
                       f"{len(rounds)} rounds, size {final}" + (f"; {bad[0]}" if bad else ""),
                       {"sizes": [r.final_size for r in rounds]})


# --- asynchronous submission -------------------------------------------------------------


def _fio(ctx: CaseContext, m: FuseMount, name: str, job: str) -> str:
    g = ctx.guest
    g.run(f"cat > {REMOTE}/{name}.fio <<'EOF'\n{job}EOF", check=True)
    res = g.run(["fio", "--output-format=terse", f"{REMOTE}/{name}.fio"], timeout=300)
    return "" if res.ok else f"{name}: fio exit {res.exit_status}: {res.tail(3)}"


def case_async_io(ctx: CaseContext) -> Observation:
    """libaio and io_uring, iodepth 8, verified. Non-extending async direct
    writes drop the inode lock once submitted, so several are in flight on
    every kernel; extending ones are made blocking under the exclusive lock,
    so none of them overlaps another WRITE."""
    notes: list[str] = []
    inflight: dict[str, int] = {}
    for engine in ("libaio", "io_uring"):
        with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
            ctx.guest.run(["truncate", "-s", "4M", f"{m.path}/aio"], check=True)
            notes.append(_fio(ctx, m, engine, (
                f"[aio]\nfilename={m.path}/aio\nsize=4m\nbs=64k\nrw=randwrite\n"
                f"ioengine={engine}\niodepth=8\ndirect=1\nverify=crc32c\ndo_verify=1\n"
                "verify_fatal=1\n")))
        inflight[engine] = m.file_stats("aio").max_inflight
    with ctx.mount(ServerOptions(delay_write_us=20_000)) as m:
        notes.append(_fio(ctx, m, "extending", (
            f"[ext]\nfilename={m.path}/ext\nsize=2m\nbs=64k\nrw=write\nioengine=libaio\n"
            "iodepth=8\ndirect=1\nfallocate=none\n")))
    ext = m.file_stats("ext")
    problems = [n for n in notes if n]
    if inflight["libaio"] < 2:
        problems.append(f"libaio: {inflight['libaio']} in flight (want several)")
    if ext.extending_writes < 2:
        problems.append(f"INCONCLUSIVE: only {ext.extending_writes} extending async WRITEs")
    if ext.max_extending_overlap:
        problems.append(f"{ext.max_extending_overlap} WRITEs overlapped an extending async one")
    observed = (", ".join(f"{e}: {n} in flight" for e, n in inflight.items())
                + f"; extending: {ext.max_extending_overlap} overlapped"
                + (f"; {'; '.join(problems)}" if problems else ""))
    return Observation(not problems, "verified; several non-extending in flight; "
                       "extending ones alone", observed,
                       {"max_inflight": inflight, "extending": _record(ext)})


# --- mixing, and the server going away ---------------------------------------------------


def case_mixed(ctx: CaseContext) -> Observation:
    # Without auto_inval_data, nothing but the direct write path's own
    # invalidation keeps the buffered fd's cached blocks from going stale.
    with ctx.mount(ServerOptions(direct_io=False, auto_inval_data=False)) as m:
        result = records.parse_mixed(probe(ctx.guest, "mixed", file=f"{m.path}/m",
                                             size=1024 * 1024, block=BLOCK))
    observed = "; ".join((*result.errors, f"{result.mismatched_blocks} blocks mismatched"))
    if result.cached_blocks < result.blocks and not result.errors:
        observed += f"; only {result.cached_blocks} of {result.blocks} blocks read before"
    return Observation(result.ok, "readers see the data written, through a buffered fd "
                       "whose cache held every block before the direct writes",
                       "ok" if result.ok else observed, {"probe": _record(result)})


def case_server_death(ctx: CaseContext) -> Observation:
    g = ctx.guest
    out = f"/run/lab-{ctx.mount_name}-death.json"
    m = ctx.mount(ServerOptions(delay_write_us=2_000_000))
    with m:
        writers = shlex.join(probe_argv("write-until-error", file=f"{m.path}/k", writers=4,
                                        block=BLOCK, count=50, presize=4 * 50 * BLOCK))
        pid = g.run(f"{writers} > {out} 2>&1 & echo $!", check=True).stdout.strip()
        time.sleep(1.0)
        g.run(f"kill -9 {m.pid()}", check=True)
        # The writers must come back on their own; give them 30 s (scaled).
        waited = g.run(f"for i in $(seq 300); do kill -0 {pid} 2>/dev/null || exit 0; "
                       "sleep 0.1; done; exit 1", timeout=60)
        if not waited.ok:
            g.run(f"kill -9 {pid}")
        g.run(f"umount -l {m.path}", timeout=30)
    hung = not waited.ok
    result = None if hung else records.parse_probe(
        records.load_json(g.run(["cat", out], check=True).stdout, "labprobe write-until-error"),
        "labprobe write-until-error")
    errs = sorted({str(w.errno_name) for w in result.writers}) if result else []
    passed = result is not None and bool(result.writers) and all(
        w.errno_name in ("ENOTCONN", "ECONNABORTED", "EIO") for w in result.writers)
    return Observation(passed, "writers fail with ENOTCONN, nothing hangs",
                       f"{'writers hung' if hung else 'writers returned'}: {', '.join(errs)}",
                       {"probe": _record(result) if result else None})


CASES: tuple[Case, ...] = (
    Case(1, "parallel-nonextending", "N writers inside a pre-sized file",
         case_parallel_nonextending),
    Case(2, "flag-off", "server does not set the flag", case_flag_off),
    Case(3, "cached-odirect", "O_DIRECT on a cached open", case_cached_odirect),
    Case(4, "extending", "extending writes beside a held non-extending one", case_extending),
    Case(5, "eof-exact", "writes ending exactly at EOF", case_eof_exact),
    Case(6, "append", "O_APPEND writers", case_append),
    # Three races of ~3 s each (a 1.5 s SETATTR, then the writers), and
    # caller-flags' ~12 s of held WRITEs: more than the default budget beside
    # other cases on a loaded host.
    Case(7, "truncate-race", "shrinking truncate racing writers", case_truncate_race,
         budget_s=40.0),
    Case(8, "integrity", "data integrity on the real backing store", case_integrity),
    Case(9, "short-write", "short writes from the server", case_short_write),
    Case(10, "server-errors", "ENOSPC from the server on some writes", case_server_errors),
    Case(11, "async-io", "libaio and io_uring direct writes", case_async_io),
    Case(12, "mixed", "buffered and direct access mixed", case_mixed),
    Case(13, "server-death", "the server dies mid-write", case_server_death),
    Case(14, "parallel-odirect", "O_DIRECT fds on a direct-io open", case_parallel_odirect),
    Case(15, "append-stale", "O_APPEND writers whose position is inside the file",
         case_append_stale),
    Case(16, "shared-short-write", "short writes on the shared-lock path",
         case_shared_short_write),
    Case(17, "shared-server-errors", "server errors on the shared-lock path",
         case_shared_server_errors),
    Case(18, "zero-length", "zero-length writes on both paths", case_zero_length),
    Case(19, "efbig", "RLIMIT_FSIZE on both paths", case_efbig),
    Case(20, "attributes", "size and mtime seen by another process", case_attributes),
    Case(21, "lock-pairing", "shared, exclusive and truncate in turn", case_lock_pairing),
    # A held round (3.2 s of holds on a serializing kernel), three waiting
    # rounds (2.4 s each on an I/O-modes kernel) and a truncating one (1.6 s).
    Case(22, "cached-open", "a page-cache open held, waiting or truncating, during parallel "
         "direct writes", case_cached_open, budget_s=40.0),
    Case(23, "odirect-server-errors", "server errors on extending O_DIRECT writes",
         case_odirect_server_errors),
    # Beyond the feature: a seeded randomized exerciser checked against a model
    # (lab/suite/fsx.py); 3 seeds x 4 s of operations, plus start-up, within budget.
    Case(24, "fsx", "randomized concurrent operations checked against a model",
         case_fsx, budget_s=45.0, alone=True),
    # Seven rounds on fresh mounts, two of them with 0.8 s holds: ~26 s beside
    # another case on a loaded host.
    Case(25, "aio-server-errors", "server errors on extending AIO writes, and the path each takes",
         case_aio_server_errors, budget_s=40.0),
    Case(26, "mmap", "shared and private mappings during parallel direct writes", case_mmap),
    Case(27, "unaligned", "unaligned writers inside a file ending mid-page", case_unaligned),
    Case(28, "rwf-append", "appends asked per call (RWF_APPEND) on plain fds",
         case_rwf_append),
    Case(29, "dsync", "non-extending writers asking for data sync per call and per open",
         case_dsync),
    Case(30, "caller-flags", "sync and direct flags on writes that must be exclusive",
         case_caller_flags, budget_s=40.0),
)


def select(expr: str | None) -> list[Case]:
    """The cases `expr` names: comma-separated parts, each a case's exact name or
    number (that case only: `short-write` must not also pick `shared-short-write`)
    or else a substring of names, like pytest's -k."""
    if not expr:
        return list(CASES)
    parts = [p.strip() for p in expr.split(",") if p.strip()]
    exact = {c.name for c in CASES} | {str(c.number) for c in CASES}

    def picks(part: str, case: Case) -> bool:
        if part in exact:
            return part in (case.name, str(case.number))
        return part in case.name

    chosen = [c for c in CASES if any(picks(p, c) for p in parts)]
    if not chosen:
        raise ConfigError(f"no case matches {expr!r}; cases: {', '.join(c.name for c in CASES)}")
    return chosen
