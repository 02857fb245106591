"""What a run produced, as data that round-trips through results.json, and
the merge of shards (a data operation on results).

The figures of a series' cover letter are the series' data
(lab/kernel/letter_figures.py); a run records them in its inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import ConfigError
from lab.verdict import RunsVerdict

SCHEMA_VERSION = 1
SHARED_WORKLOADS = ("ssf", "ssf-presized")

T = TypeVar("T")


def _build(cls: type[T], data: Any, what: str) -> T:
    """Construct a flat dataclass from a dict, ignoring keys we do not know."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"results: {what} is not an object: {data!r:.80}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    required = {
        f.name
        for f in fields(cls)  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING
    }
    missing = sorted(required - data.keys())
    if missing:
        raise ConfigError(f"results: {what} lacks {', '.join(missing)}")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"results: bad {what}: {e}") from e


@dataclass(frozen=True)
class BenchSample:
    """One fio run: one variant, workload, server mode, job count and repeat.

    mode "null": the server acknowledges WRITEs without copying data;
    "latency": it holds each WRITE `write_delay_us`, so throughput shows how
    many WRITEs the kernel lets run at once. `max_inflight` is the most WRITEs
    the server saw in flight at once during the run.
    """

    variant: str
    workload: str
    mode: str
    numjobs: int
    repeat: int
    bw_bytes: float
    iops: float
    max_inflight: int
    extending_writes: int
    write_delay_us: int
    # fio's own measure of how long the run wrote (0 in results from before it
    # was kept): what the benchmark's efficiency is counted from.
    runtime_ms: int = 0

    def __post_init__(self) -> None:
        # JSON gives 3.0 or "3" as readily as 3; normalise so equality and keys work.
        for name in ("numjobs", "repeat", "max_inflight", "extending_writes", "write_delay_us",
                     "runtime_ms"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("bw_bytes", "iops"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.variant, self.workload, self.mode, self.numjobs, self.repeat)

    @property
    def bw_mib(self) -> float:
        return self.bw_bytes / (1 << 20)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchSample:
        return _build(cls, data, "sample")


@dataclass(frozen=True)
class KernelEvidence:
    """How the kernel under test failed a check: it crashed, hung, failed to
    boot, or reported trouble while cases ran together (`kind`), with the
    console text behind it."""

    kind: str
    summary: str
    reports: tuple[str, ...] = ()  # the console report kinds seen (lab.vm.console)
    blocked_tasks: int = 0  # how many tasks sysrq-w showed in D state
    evidence: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelEvidence:
        blocked = data.get("blocked_tasks", 0)
        return cls(kind=str(data.get("kind", "failure")), summary=str(data.get("summary", "")),
                   reports=tuple(str(r) for r in data.get("reports", ())),
                   blocked_tasks=blocked if isinstance(blocked, int) else 0,
                   evidence=str(data.get("evidence", "")))


class CheckKind(StrEnum):
    """Where a check comes from, which decides how it is judged: the lab's own
    cases against what the variant claims; the tree's and the user's tests
    (scripts, kselftest, KUnit) against the base of an A/B (lab.suite.ab)."""

    CASE = "case"
    SCRIPT = "script"
    KSELFTEST = "kselftest"
    KUNIT = "kunit"

    @property
    def judged_against_base(self) -> bool:
        return self is not CheckKind.CASE


# What a sub-result's directive makes of it (KTAP, TAP 13/14): SKIP, TODO and
# XFAIL turn a `not ok` into "not a failure"; TIMEOUT and ERROR are failures
# whatever the line says.
NOT_FAILURES = ("SKIP", "TODO", "XFAIL")
ALWAYS_FAILURES = ("TIMEOUT", "ERROR")


def is_failure(ok: bool, directive: str) -> bool:
    return directive in ALWAYS_FAILURES or (not ok and directive not in NOT_FAILURES)


@dataclass(frozen=True)
class SubResult:
    """One sub-test of a script, kselftest or KUnit check (a KTAP/TAP result
    line), named by its path: "suite/case"."""

    name: str
    ok: bool
    directive: str = ""  # SKIP, TODO, XFAIL, TIMEOUT, ERROR or ""

    @property
    def failed(self) -> bool:
        return is_failure(self.ok, self.directive)

    @property
    def skipped(self) -> bool:
        return self.directive == "SKIP"

    @classmethod
    def from_dict(cls, data: Any) -> SubResult:
        sub = _build(cls, data, "sub-result")
        if not isinstance(sub.ok, bool):
            raise ConfigError(f"results: sub-result {sub.name!r}: ok is {sub.ok!r}")
        return sub


class AbRole(StrEnum):
    BASE = "base"  # the reference of the comparison: its failures are shown, not judged
    HEAD = "head"  # judged against the base, sub-test by sub-test


@dataclass(frozen=True)
class OwnVerdict:
    """A check's verdict as it ran, before the A/B judgement replaced it."""

    passed: bool
    observed: str
    verdict: str = ""


@dataclass(frozen=True)
class AbReading:
    """What the A/B judgement (lab.suite.ab) made of a tree's or user's test."""

    role: AbRole
    own: OwnVerdict
    base: str = ""  # the head's base variant
    failures: tuple[str, ...] = ()  # the base's failing sub-tests
    regressions: tuple[str, ...] = ()  # failing on the head only
    pre_existing: tuple[str, ...] = ()  # failing on both
    failed_as_a_whole: str = ""  # why the head failed beyond its sub-tests, if it did
    base_failed_as_a_whole: str = ""
    skipped_here: int = 0
    skipped_base: int = 0

    @classmethod
    def from_dict(cls, data: Any) -> AbReading:
        if not isinstance(data, Mapping):
            raise ConfigError(f"results: ab is not an object: {data!r:.80}")
        skipped = data.get("skipped") or {}  # older files: {"here": n, "base": n}
        if not isinstance(skipped, Mapping):
            raise ConfigError(f"results: ab: skipped is {skipped!r:.80}")
        data = {"skipped_here": skipped.get("here", 0), "skipped_base": skipped.get("base", 0),
                **{k: v for k, v in data.items() if k != "skipped"}}
        reading = _build(cls, data, "ab")
        try:
            role = AbRole(reading.role)
        except ValueError:
            raise ConfigError(f"results: ab: unknown role {reading.role!r}") from None
        lists = {n: tuple(str(x) for x in getattr(reading, n))
                 for n in ("failures", "regressions", "pre_existing")}
        return replace(reading, role=role, own=_build(OwnVerdict, reading.own, "ab.own"), **lists)


# Keys of `details` that older results.json files used for what are now typed fields.
_LIFTED = ("number", "title", "subtests", "timed_out", "ab", "cached_from")


@dataclass(frozen=True)
class CheckResult:
    """One functional check on one variant, with the evidence for its verdict."""

    name: str
    variant: str
    passed: bool
    expected: str
    observed: str
    # What the check observed, as the check recorded it (a case's counters, a
    # script's exit status and output tail, fsx's runs): shown in the report
    # and the JUnit as it is; the lab decides nothing from it. What the lab
    # reads is in the typed fields below.
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    console_excerpt: str = ""
    # The flake policy's verdict over the runs: "pass", "fail" or "flaky"
    # (a failed check that some runs passed); lab.verdict.RunsVerdict's values.
    verdict: str = ""
    kind: CheckKind = CheckKind.CASE
    kernel: KernelEvidence | None = None  # set when the kernel itself failed the check
    number: int = 0  # the case's number in the catalog; 0 for checks outside it
    title: str = ""
    subtests: tuple[SubResult, ...] = ()  # scripts, kselftest, KUnit
    timed_out: bool = False  # stopped by its time limit (scripts, kselftest)
    ab: AbReading | None = None  # set where judged A/B (lab.suite.ab)
    cached_from: str = ""  # the run whose verdict this is, when the verdict cache served it

    @property
    def runs_verdict(self) -> RunsVerdict:
        if self.verdict:
            return RunsVerdict(self.verdict)
        return RunsVerdict.PASS if self.passed else RunsVerdict.FAIL

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.variant)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        # Files written before the typed fields have no "number" at the top;
        # a current file's details are evidence, kept as they are.
        if (isinstance(data, Mapping) and "number" not in data
                and isinstance(data.get("details"), Mapping)):
            data = _lift_older_details(data)
        check = _build(cls, data, "check")
        kernel = check.kernel
        if isinstance(kernel, Mapping):
            check = replace(check, kernel=KernelEvidence.from_dict(kernel))
        elif kernel is not None:
            raise ConfigError(f"results: check {check.name!r}: kernel is {kernel!r}")
        if not isinstance(check.passed, bool):
            raise ConfigError(f"results: check {check.name!r}: passed is {check.passed!r}")
        for name, want in (("number", int), ("title", str), ("timed_out", bool),
                           ("cached_from", str), ("subtests", list | tuple)):
            value = getattr(check, name)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"results: check {check.name!r}: {name} is {value!r:.80}")
        try:
            kind = CheckKind(check.kind)
        except ValueError:
            raise ConfigError(f"results: check {check.name!r}: unknown kind {check.kind!r}"
                              ) from None
        return replace(check, kind=kind,
                       subtests=tuple(SubResult.from_dict(s) for s in check.subtests),
                       ab=None if check.ab is None else AbReading.from_dict(check.ab))


def _lift_older_details(data: Mapping[str, Any]) -> dict[str, Any]:
    """Older results.json files kept the case's number and title, sub-results,
    A/B reading, time-out and kernel failure as keys of `details`."""
    details = dict(data["details"])
    lifted = {k: details.pop(k) for k in _LIFTED if k in details}
    if "kernel_failure" in details:
        lifted["kernel"] = details.pop("kernel_failure")
    merged = {**data, "details": details}
    for key, value in lifted.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class RunResults:
    """Everything one run (or a merge of shards) produced.

    `inputs` identifies what was measured (kernel source, patch and config
    hashes, vcpus, ...): shards merge only when their inputs are equal.
    `variants` maps a variant name to facts about its kernel, e.g.
    {"kernel_release": ..., "bzimage_sha256": ..., "features": [...]}.
    """

    run_id: str
    created: str
    inputs: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    accel: str = ""
    samples: tuple[BenchSample, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    notes: tuple[str, ...] = ()
    # Where the run's time went (lab.ui.PhaseTimer.to_dict); per shard once merged.
    timings: dict[str, Any] = field(default_factory=dict)

    def features(self, variant: str) -> tuple[str, ...] | None:
        """The features the variant's kernel claims; None if not recorded."""
        features = self.variants.get(variant, {}).get("features")
        return None if features is None else tuple(features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            "created": self.created,
            "inputs": self.inputs,
            "variants": self.variants,
            "accel": self.accel,
            "samples": [s.to_dict() for s in self.samples],
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "timings": self.timings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResults:
        if not isinstance(data, Mapping):
            raise ConfigError("results: top level is not an object")
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise ConfigError(f"results: schema {schema!r}, this lab reads {SCHEMA_VERSION}")
        for key in ("run_id", "created"):
            if not isinstance(data.get(key), str):
                raise ConfigError(f"results: {key} missing or not a string")
        return cls(
            run_id=data["run_id"],
            created=data["created"],
            inputs=dict(data.get("inputs") or {}),
            variants={k: dict(v) for k, v in (data.get("variants") or {}).items()},
            accel=str(data.get("accel", "")),
            samples=tuple(BenchSample.from_dict(s) for s in data.get("samples") or ()),
            checks=tuple(CheckResult.from_dict(c) for c in data.get("checks") or ()),
            notes=tuple(str(n) for n in data.get("notes") or ()),
            timings=dict(data.get("timings") or {}),
        )

    def save(self, path: Path) -> Path:
        """Write JSON atomically, so a crash never leaves half a results file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> RunResults:
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read results {path}: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"results {path} is not JSON: {e}") from e
        return cls.from_dict(data)


def merge(results_list: Sequence[RunResults]) -> RunResults:
    """Merge shard results into one.

    Refuses (ConfigError) when shards disagree on `inputs`: their numbers
    would not describe the same kernels. Identical samples (same variant,
    workload, mode, numjobs, repeat) and checks (same name, variant) are
    kept once; if two shards disagree on one, the first sample and the
    failing check are kept and a note says so. Variant facts and the
    accelerator are merged with a note on conflicts (separately built
    bzImages need not be bit-identical).
    """
    if not results_list:
        raise ConfigError("nothing to merge")
    first = results_list[0]
    for other in results_list[1:]:
        keys = set(first.inputs) | set(other.inputs)
        differ = sorted(k for k in keys if first.inputs.get(k, None) != other.inputs.get(k, None))
        if differ:
            raise ConfigError(
                f"cannot merge {other.run_id} into {first.run_id}: inputs differ in "
                + ", ".join(differ)
            )
    notes: list[str] = [n for r in results_list for n in r.notes]
    variants: dict[str, dict[str, Any]] = {}
    for r in results_list:
        for name, info in r.variants.items():
            have = variants.setdefault(name, dict(info))
            for key, value in info.items():
                if key not in have:
                    have[key] = value
                elif have[key] != value:
                    notes.append(f"merge: shard {r.run_id} has another {name} {key}: {value!r}")

    samples: dict[tuple[str, str, str, int, int], BenchSample] = {}
    for r in results_list:
        for s in r.samples:
            if s.key not in samples:
                samples[s.key] = s
            elif samples[s.key] != s:
                notes.append(f"merge: conflicting sample {s.key} in {r.run_id}; kept the first")
    checks: dict[tuple[str, str], CheckResult] = {}
    for r in results_list:
        for c in r.checks:
            have = checks.get(c.key)
            if have is None:
                checks[c.key] = c
            elif have != c:
                notes.append(
                    f"merge: conflicting check {c.key} in {r.run_id}; kept a failing result"
                )
                if have.passed and not c.passed:
                    checks[c.key] = c
    accels = list(dict.fromkeys(r.accel for r in results_list if r.accel))
    if len(accels) > 1:
        notes.append(f"merge: shards ran under different accelerators: {', '.join(accels)}")
    return RunResults(
        run_id=first.run_id,
        created=min(r.created for r in results_list),
        inputs=dict(first.inputs),
        variants=variants,
        accel="+".join(accels),
        samples=tuple(samples.values()),
        checks=tuple(checks.values()),
        notes=tuple(dict.fromkeys(notes)),
        timings=dict(first.timings) if len(results_list) == 1 else
        {"shards": {r.run_id: r.timings for r in results_list if r.timings}},
    )
