"""Typed records for everything our guest programs report, parsed in one place.

labfs writes its counters and labprobe its results as JSON. Nothing else in
the lab reads that JSON: a missing or renamed field is a ParseError naming
the field here, never a silent -1 or 0 in a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from lab.errors import ParseError

T = TypeVar("T")


class Fields:
    """Typed access to one JSON object, naming the record and the field on error."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, Mapping):
            raise ParseError(f"{what}: expected an object, got {type(data).__name__}")
        self.data = data
        self.what = what

    def _get(self, key: str, types: tuple[type, ...], optional: bool) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise ParseError(f"{self.what}: field {key!r} is missing")
        value = self.data[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise ParseError(f"{self.what}: field {key!r} is {value!r}, "
                             f"not {'/'.join(t.__name__ for t in types)}")
        return value

    def int(self, key: str) -> int:
        return self._get(key, (int,), False)

    def opt_int(self, key: str) -> int | None:
        return self._get(key, (int,), True)

    def float(self, key: str) -> float:
        return float(self._get(key, (int, float), False))

    def bool(self, key: str) -> bool:
        return self._get(key, (bool,), False)

    def opt_bool(self, key: str) -> bool | None:
        return self._get(key, (bool,), True)

    def opt_str(self, key: str) -> str | None:
        return self._get(key, (str,), True)

    def list(self, key: str) -> list[Any]:
        return self._get(key, (list,), False)

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key, (dict,), False), f"{self.what}.{key}")


def load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{what}: not JSON ({exc.msg}): {text[:300]!r}") from exc


# --- labfs -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileCounters:
    """What labfs saw for one file."""

    writes: int
    bytes: int
    max_inflight: int  # most WRITEs the server held at once
    extending_writes: int
    max_extending_overlap: int  # most WRITEs overlapping an extending one
    setattrs: int
    errors_injected: int
    short_writes: int

    @classmethod
    def parse(cls, f: Fields) -> FileCounters:
        return cls(*(f.int(name) for name in cls.__dataclass_fields__))


NO_WRITES = FileCounters(0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class ServerStats:
    writes: int
    max_inflight: int
    files: Mapping[str, FileCounters]

    def file(self, name: str) -> FileCounters:
        """Counters of `name` (relative to the mount); a file the server never
        saw a request for has none, which is a fact (zero WRITEs), not a gap."""
        return self.files.get(name, NO_WRITES)


def parse_server_stats(text: str) -> ServerStats:
    f = Fields(load_json(text, "labfs counters"), "labfs counters")
    totals = f.obj("totals")
    files = f.obj("files")
    return ServerStats(
        writes=totals.int("writes"),
        max_inflight=totals.int("max_inflight"),
        files={name.lstrip("/"): FileCounters.parse(files.obj(name)) for name in files.data},
    )


# --- labprobe --------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """One writer thread of labprobe: its (last) write and how it ended."""

    index: int
    ret: int  # the (last) write's return value, -1 on error
    errno_name: str | None
    offset: int | None  # where its first write went (not for appends)
    writes_ok: int | None  # for the looping modes
    start_ms: float
    end_ms: float

    @classmethod
    def parse(cls, f: Fields) -> Writer:
        looping = "last_ret" in f.data
        return cls(
            index=f.int("writer"),
            ret=f.int("last_ret" if looping else "ret"),
            errno_name=f.opt_str("first_errno_name" if "first_errno_name" in f.data
                                 else "errno_name"),
            offset=f.opt_int("offset") if "offset" in f.data else f.opt_int("region_offset"),
            writes_ok=f.opt_int("writes_ok"),
            start_ms=f.float("start_ms"),
            end_ms=f.float("end_ms"),
        )


@dataclass(frozen=True)
class BadBlock:
    writer: int
    first_bad_offset: int
    reason: str


@dataclass(frozen=True)
class MmapProbe:
    """labprobe pwrite --mmap: the first page mapped while the writers ran."""

    open_errno: str | None
    shared_errno: str | None  # MAP_SHARED; ENODEV on a direct-io open
    private_errno: str | None  # MAP_PRIVATE
    first_word: int  # read through the private mapping

    @classmethod
    def parse(cls, f: Fields) -> MmapProbe:
        return cls(f.opt_str("open_errno_name"), f.opt_str("shared_errno_name"),
                   f.opt_str("private_errno_name"), f.int("first_word"))


@dataclass(frozen=True)
class GateOpen:
    """labprobe pwrite --gate-open: a read-only open made at the gate; the late
    writers started once it `blocked` (slept uninterruptibly) or returned."""

    blocked: bool
    errno_name: str | None
    start_ms: float
    end_ms: float
    blocked_ms: float  # when it was seen waiting; -1 if never


@dataclass(frozen=True)
class Flip:
    """labprobe pwrite --flip-direct: O_DIRECT toggled on the late writers' fds
    once all of them `blocked` in the kernel."""

    blocked: bool
    flipped: int
    errno_name: str | None
    flipped_ms: float  # when the last fd was flipped; -1 if none was


@dataclass(frozen=True)
class Gate:
    """labprobe pwrite --gate: writers `after`.. started only once the server
    held the first ones' WRITEs; `timed_out`: it never did (inconclusive)."""

    after: int
    timed_out: bool
    opened_ms: float
    open: GateOpen | None = None
    flip: Flip | None = None

    @classmethod
    def parse(cls, g: Fields) -> Gate:
        o = g.obj("open") if "open" in g.data else None
        fl = g.obj("flip") if "flip" in g.data else None
        return cls(g.int("after"), g.bool("timed_out"), g.float("opened_ms"),
                   GateOpen(o.bool("blocked"), o.opt_str("errno_name"), o.float("start_ms"),
                            o.float("end_ms"), o.float("blocked_ms")) if o else None,
                   Flip(fl.bool("blocked"), fl.int("flipped"), fl.opt_str("errno_name"),
                        fl.float("flipped_ms")) if fl else None)


@dataclass(frozen=True)
class TruncOpen:
    """labprobe pwrite --trunc-open: an O_WRONLY|O_TRUNC open made before the
    writers went, which the server `held` when they did; `writers_blocked`:
    how many were seen waiting in the kernel before that open returned."""

    held: bool
    held_ms: float
    writers_blocked: int
    blocked_ms: float  # when the last of them was seen waiting; -1 if none
    errno_name: str | None
    start_ms: float
    end_ms: float

    @classmethod
    def parse(cls, t: Fields) -> TruncOpen:
        return cls(t.bool("held"), t.float("held_ms"), t.int("writers_blocked"),
                   t.float("blocked_ms"), t.opt_str("errno_name"), t.float("start_ms"),
                   t.float("end_ms"))


@dataclass(frozen=True)
class ProbeResult:
    """labprobe pwrite / truncate-race / write-until-error."""

    writers: tuple[Writer, ...]
    final_size: int | None  # None: stat failed (a dead server)
    verify_ok: bool | None  # None: not asked to verify
    bad_blocks: tuple[BadBlock, ...]
    mmap: MmapProbe | None = None  # pwrite --mmap only
    gate: Gate | None = None  # pwrite --gate only
    trunc_open: TruncOpen | None = None  # pwrite --trunc-open only

    def wrong_returns(self, length: int) -> list[Writer]:
        return [w for w in self.writers if w.ret != length]


def _writers(f: Fields) -> tuple[Writer, ...]:
    return tuple(Writer.parse(Fields(w, f"{f.what}.writers[{i}]"))
                 for i, w in enumerate(f.list("writers")))


def parse_probe(data: Any, what: str) -> ProbeResult:
    f = Fields(data, what)
    bad = tuple(BadBlock(b.int("writer"), b.int("first_bad_offset"), b.opt_str("reason") or "")
                for b in (Fields(x, f"{what}.bad_blocks") for x in
                          (f.list("bad_blocks") if "bad_blocks" in f.data else [])))
    mmap = MmapProbe.parse(f.obj("mmap")) if "mmap" in f.data else None
    gate = None
    if isinstance(f.data.get("gate"), dict):
        gate = Gate.parse(f.obj("gate"))
    trunc = TruncOpen.parse(f.obj("trunc_open")) if "trunc_open" in f.data else None
    return ProbeResult(_writers(f), f.opt_int("final_size"), f.opt_bool("verify_ok"), bad, mmap,
                       gate, trunc)


@dataclass(frozen=True)
class TruncateRace:
    probe: ProbeResult
    truncate_ret: int
    truncate_start_ms: float
    truncate_end_ms: float
    writers_released_ms: float
    expected_size: int


def parse_truncate_race(data: Any) -> TruncateRace:
    what = "labprobe truncate-race"
    f = Fields(data, what)
    tr = f.obj("truncate")
    return TruncateRace(parse_probe(data, what), tr.int("ret"), tr.float("start_ms"),
                        tr.float("end_ms"), f.float("writers_released_ms"),
                        f.int("expected_size"))


@dataclass(frozen=True)
class AppendResult:
    writers: tuple[Writer, ...]
    ok: bool
    records_expected: int
    records_found: int
    duplicates: int
    missing: int
    torn: int
    garbage_bytes: int
    final_size: int | None
    expected_size: int


def parse_append(data: Any) -> AppendResult:
    what = "labprobe append"
    f = Fields(data, what)
    read_ok = f.bool("read_ok")
    counts = {k: (f.int(k) if read_ok else 0) for k in
              ("records_expected", "records_found", "duplicates", "missing", "torn",
               "garbage_bytes")}
    return AppendResult(_writers(f), f.bool("ok"), final_size=f.opt_int("final_size"),
                        expected_size=f.int("expected_size"), **counts)


@dataclass(frozen=True)
class MixedResult:
    ok: bool
    mismatched_blocks: int
    blocks: int
    # Read through the buffered fd just before the direct writes: what the
    # direct writes must invalidate for the later reads to be right.
    cached_blocks: int
    # What failed before the reads ("O_DIRECT open: EINVAL"); empty if nothing did.
    errors: tuple[str, ...] = ()


def parse_mixed(data: Any) -> MixedResult:
    f = Fields(data, "labprobe mixed")
    bad = f.obj("buffered_read").int("mismatched_blocks")
    if isinstance(f.data.get("direct_read"), dict):
        bad += f.obj("direct_read").int("mismatched_blocks")
    errors = tuple(f"{step}: {f.opt_str(key + '_name') or f.int(key)}"
                   for step, key in (("buffered write", "buffered_write_errno"),
                                     ("fsync", "fsync_errno"),
                                     ("O_DIRECT open", "direct_open_errno"),
                                     ("direct write", "direct_write_errno"))
                   if f.int(key))
    return MixedResult(f.bool("ok"), bad, f.int("blocks"),
                       f.int("blocks_cached_before_direct_writes"), errors)
