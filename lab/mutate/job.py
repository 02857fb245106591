"""`lab mutate`: does the suite notice when the code under test is wrong?

For the C functions a variant's own patches change (the series' baseline
patch is not the variant's change), every mutant from lab/mutate/mutants.py is
built incrementally in one build folder, booted, and run against the suite as
`lab test` runs it (independent cases together, the rest and any that failed
together one by one); a failed case, or a kernel failure while cases ran
together, kills it. The kill matrix (mutant, operator, diff, killed-by case /
survived / build-failed / timed-out / equivalent / lab-error) is written
after every mutant as JSON, Markdown and JUnit, with the score: killed /
(mutants that built and were judged, less those shown equivalent); a mutant
the lab broke on has no verdict and no place in the score.

Equivalent mutants (no observable behaviour can tell them from the
original) are declared by a person, with the reason, in the series folder's
`equivalent-mutants.toml`; their keys are stable hashes of the edit.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from lab import pipeline
from lab.config import LabConfig
from lab.errors import BootError, BuildError, ConfigError, KernelFailure, LabError
from lab.host import cache
from lab.kernel import build, patching
from lab.kernel.build import Variant
from lab.kernel.series import load_series
from lab.mutate import mutants
from lab.mutate.mutants import Mutant
from lab.report import document
from lab.report import junit as junit_xml
from lab.report.document import Block, Table
from lab.shard import Shard, select
from lab.suite import catalog, checks, together
from lab.ui import Ui

EQUIVALENTS_FILE = "equivalent-mutants.toml"
MUTANT_VARIANT = "mutant"
class Status(StrEnum):
    """What became of a mutant (its value is what the kill matrix shows)."""

    KILLED = "killed"
    SURVIVED = "survived"
    BUILD_FAILED = "build-failed"
    TIMED_OUT = "timed-out"
    EQUIVALENT = "equivalent"
    # The lab or the host broke while testing it: no verdict, not in the
    # score, and the run goes on (`lab mutate` exits 3 at the end).
    LAB_ERROR = "lab-error"


COUNTED = (Status.KILLED, Status.TIMED_OUT, Status.SURVIVED)


@dataclass(frozen=True)
class MutateRequest:
    variant: pipeline.VariantRequest
    limit: int | None = None
    seed: int | None = None
    shard: Shard | None = None
    equivalents: Path | None = None
    only: tuple[str, ...] = ()  # mutant keys (re-run the survivors after a suite change)


@dataclass(frozen=True)
class Outcome:
    key: str
    operator: str
    function: str
    line: int
    summary: str
    status: Status
    killed_by: str = ""
    detail: str = ""
    build_s: float = 0.0
    test_s: float = 0.0
    diff: str = ""


@dataclass(frozen=True)
class MutationReport:
    variant: str
    functions: tuple[str, ...]
    generated: int
    outcomes: tuple[Outcome, ...] = ()
    equivalents: dict[str, str] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        counted = [o for o in self.outcomes if o.status in COUNTED]
        if not counted:
            return None
        return sum(o.status != Status.SURVIVED for o in counted) / len(counted)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "functions": list(self.functions),
                "generated": self.generated, "score": self.score,
                "by_status": dict(Counter(o.status for o in self.outcomes)),
                "by_operator": _by_operator(self.outcomes),
                "outcomes": [dataclasses.asdict(o) for o in self.outcomes]}


def _by_operator(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for o in outcomes:
        table.setdefault(o.operator, Counter())[o.status] += 1  # type: ignore[index]
    return {op: dict(c) for op, c in table.items()}


# --- what the variant's own patches change -----------------------------------------


def _patched_c_files(patches: Sequence[Path]) -> list[str]:
    files: list[str] = []
    for p in patches:
        for m in re.finditer(r"^\+\+\+ b/(\S+\.[ch])\s*$", p.read_text(errors="replace"), re.M):
            if m.group(1) not in files:
                files.append(m.group(1))
    return files


def _image_of(v: Variant, cache_root: Path, relpaths: Sequence[str], patches: Sequence[Path],
              log_path: Path) -> dict[str, str]:
    """The files' text after `patches`, applied exactly as a build applies
    them (build.apply_patches: mboxes mail by mail, the fuzz ladder, `strict`)
    to a scratch tree holding copies of just the files the patches name; the
    shared source tree is only read, under its lock (another lab process may
    be building from it). A file absent afterwards reads as ""."""
    tree = v.source.path
    named = [*relpaths]
    for patch in patches:
        named += patching.diff_paths(patch.read_text(errors="replace"))
    with tempfile.TemporaryDirectory(prefix="lab-mutate-") as tmp:
        work = Path(tmp) / "tree"
        work.mkdir()
        with build.locked_source(v.source, cache_root):
            for rel in dict.fromkeys(named):
                if (tree / rel).is_file():
                    (work / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(tree / rel, work / rel)
        build.make_source_tree(work)
        build.apply_patches(work, patches, log_path, strict=v.strict)
        return {rel: (work / rel).read_text() if (work / rel).is_file() else ""
                for rel in relpaths}


@dataclass(frozen=True)
class Target:
    path: str  # relative to the tree
    text: str  # the variant's version of the file
    mutants: tuple[Mutant, ...]
    functions: tuple[str, ...]


def targets(v: Variant, own: Sequence[Path], cache_root: Path, log_path: Path) -> list[Target]:
    """The changed C functions of the variant's own patches, with their mutants."""
    files = _patched_c_files(own)
    if not files:
        raise ConfigError("the patch changes no C file: "
                          + ", ".join(str(p) for p in own))
    base = [p for p in v.patches if p not in own]
    before = _image_of(v, cache_root, files, base, log_path)
    after = _image_of(v, cache_root, files, v.patches, log_path)
    out = []
    for rel in files:
        changed = mutants.changed_functions(before[rel], after[rel])
        if changed:
            out.append(Target(rel, after[rel], tuple(mutants.mutants(after[rel], changed)),
                              tuple(f.name for f in changed)))
    if not out:
        raise ConfigError(f"the patch changes no C function (files: {', '.join(files)})")
    return out


def load_equivalents(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    out = {}
    for i, entry in enumerate(data.get("mutant", [])):
        key, reason = entry.get("key"), entry.get("reason")
        if not isinstance(key, str) or not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{path}: [[mutant]] #{i + 1} needs a `key` and a `reason`")
        out[key] = reason
    return out


# --- the run ---------------------------------------------------------------------------


def run(cfg: LabConfig, req: MutateRequest, out: Path, ui: Ui) -> MutationReport:
    series = load_series(cfg.series)
    (v,) = pipeline.resolve_variants(cfg, req.variant, out)
    own = [p for p in v.patches if series.baseline is None or p != series.baseline]
    found = targets(v, own, cfg.cache_root, out / "mutate-apply.log")
    every = [(t, m) for t in found for m in t.mutants]
    by_key = {m.key: (t, m) for t, m in every}
    chosen = mutants.choose([m for _t, m in every], req.limit, req.seed)
    if req.only:
        unknown = sorted(set(req.only) - set(by_key))
        if unknown:
            raise ConfigError(f"--mutant: no such mutant: {', '.join(unknown)}")
        chosen = [m for m in chosen if m.key in req.only]
    chosen = select(chosen, req.shard, key=lambda m: f"mutant/{m.key}")
    equivalents = load_equivalents(req.equivalents or series.folder / EQUIVALENTS_FILE)
    functions = tuple(f"{t.path}:{name}" for t in found for name in t.functions)
    ui.note(f"{v.name}: {len(every)} mutants of {', '.join(functions)}; running {len(chosen)}")
    img = pipeline.image(cfg, out, ui)
    # The unmutated variant first: the suite must pass it, or no kill means anything.
    base_build = pipeline.build_variants(cfg, [v], out, ui)[0]
    accel = pipeline.accelerator(cfg, base_build.bzimage, out, ui)
    report = MutationReport(v.name, functions, len(every), (), equivalents)
    (out / "mutants").mkdir(parents=True, exist_ok=True)
    for i, mutant in enumerate(chosen, 1):
        target, _ = by_key[mutant.key]
        ui.note(f"[{i}/{len(chosen)}] {mutant.key} {mutant.summary}")
        outcome = _one(cfg, v, target, mutant, img, accel, out, ui, equivalents)
        report = dataclasses.replace(report, outcomes=(*report.outcomes, outcome))
        write(report, out)
        ui.note(f"    {outcome.status}{' by ' + outcome.killed_by if outcome.killed_by else ''}"
                f" (build {outcome.build_s:.0f}s, test {outcome.test_s:.0f}s)")
    return report


def _one(cfg: LabConfig, v: Variant, target: Target, mutant: Mutant, img, accel, out: Path,
         ui: Ui, equivalents: dict[str, str]) -> Outcome:
    diff = mutants.unified_diff(target.path, target.text, mutant.apply(target.text))
    diff_path = out / "mutants" / f"{mutant.key}.diff"
    diff_path.write_text(diff)
    base = Outcome(mutant.key, mutant.operator, mutant.function, mutant.line, mutant.summary,
                   Status.SURVIVED, diff=diff)
    if mutant.key in equivalents:
        return dataclasses.replace(base, status=Status.EQUIVALENT, detail=equivalents[mutant.key])
    mv = dataclasses.replace(v, name=MUTANT_VARIANT, patches=(*v.patches, diff_path))
    start = time.monotonic()
    log_dir = out / "logs" / mutant.key
    try:
        built = pipeline.build_variants(cfg, [mv], log_dir, ui)[0]
    except BuildError as exc:
        return dataclasses.replace(base, status=Status.BUILD_FAILED,
                                   detail=(exc.excerpt or str(exc))[-600:],
                                   build_s=time.monotonic() - start)
    build_s = time.monotonic() - start
    p = pipeline.Prepared({MUTANT_VARIANT: built}, img, accel, {})
    start = time.monotonic()
    pending = list(catalog.CASES)
    # As `lab test` runs the suite: the independent cases together first, then
    # the rest (and any that failed together) one by one, each failure judged
    # alone. A kernel failure while cases ran together fails `lab test` too
    # (a case alone, or its `together` check), so it kills the mutant.
    group = together.grouped(pending, cfg.tests.lanes)
    try:
        while pending:
            with pipeline.deployed(cfg, p, MUTANT_VARIANT, log_dir, ui) as (_vm, guest):
                if group:
                    batch = together.run_batch(group, guest, MUTANT_VARIANT, v.features,
                                               lanes=cfg.tests.lanes)
                    group = []
                    if batch.trouble:
                        return dataclasses.replace(
                            base, status=Status.KILLED, killed_by=together.CHECK_NAME,
                            detail=batch.trouble[:600], build_s=build_s,
                            test_s=time.monotonic() - start)
                    passed = {r.name for r in batch.passed}
                    pending = [c for c in pending if c.name not in passed]
                while pending:
                    case = pending.pop(0)
                    run = checks.run_case(case, guest, MUTANT_VARIANT, v.features)
                    if not run.result.passed:
                        return dataclasses.replace(
                            base, status=Status.KILLED, killed_by=case.name,
                            detail=run.result.observed[:600], build_s=build_s,
                            test_s=time.monotonic() - start)
                    if not run.vm_usable:
                        break
    except KernelFailure as exc:
        return dataclasses.replace(base, status=Status.KILLED, killed_by="boot",
                                   detail=str(exc)[:600], build_s=build_s,
                                   test_s=time.monotonic() - start)
    except BootError as exc:
        return dataclasses.replace(base, status=Status.TIMED_OUT, detail=str(exc)[:600],
                                   build_s=build_s, test_s=time.monotonic() - start)
    except LabError as exc:
        ui.note(f"    the lab broke while testing {mutant.key}: {exc}")
        return dataclasses.replace(base, status=Status.LAB_ERROR, detail=str(exc)[:600],
                                   build_s=build_s, test_s=time.monotonic() - start)
    return dataclasses.replace(base, build_s=build_s, test_s=time.monotonic() - start)


# --- the kill matrix -----------------------------------------------------------------


def write(report: MutationReport, out: Path) -> None:
    cache.write_json(out / "mutate.json", report.to_dict())
    (out / "mutate.md").write_text(markdown(report))
    (out / "junit.xml").write_text(junit(report))


_MATRIX_COLUMNS = (Status.KILLED, Status.TIMED_OUT, Status.SURVIVED, Status.BUILD_FAILED,
                   Status.EQUIVALENT, Status.LAB_ERROR)


def blocks(report: MutationReport) -> list[Block]:
    """The kill matrix as document blocks (lab/report/document.py renders them)."""
    score = "n/a" if report.score is None else f"{100 * report.score:.0f}%"
    status = Counter(o.status for o in report.outcomes)
    counts = " · ".join(f"{k}: {n}" for k, n in sorted(status.items()))
    by_op = Table(("operator", *_MATRIX_COLUMNS),
                  tuple((op, *(str(c.get(s, 0)) for s in _MATRIX_COLUMNS))
                        for op, c in _by_operator(report.outcomes).items()))
    matrix = Table(("mutant", "operator", "where", "status", "by", "build s", "test s"),
                   tuple((f"`{o.key}`", o.operator, f"{o.function}:{o.line}", o.status,
                          o.killed_by, f"{o.build_s:.0f}", f"{o.test_s:.0f}")
                         for o in report.outcomes))
    out = [Block("Score", paragraphs=(
        f"Functions: {', '.join(report.functions)}. {report.generated} mutants generated, "
        f"{len(report.outcomes)} run. **Score {score}** (killed / (built - equivalent)).",
        *([counts] if counts else [])), tables=(by_op,)),
        Block("Mutants", tables=(matrix,))]
    out += [Block(f"{o.status}: `{o.key}` {o.summary}",
                  paragraphs=(o.detail,) if o.detail else (), pre=(o.diff.rstrip(),))
            for o in report.outcomes
            if o.status in (Status.SURVIVED, Status.EQUIVALENT, Status.LAB_ERROR)]
    return out


def markdown(report: MutationReport) -> str:
    return document.markdown(f"Mutation testing: {report.variant}", blocks(report))


def junit(report: MutationReport) -> str:
    """JUnit XML: a survivor fails, a mutant that did not build or is
    equivalent is skipped (lab/report/junit.py cleans every text)."""
    cases = []
    for o in report.outcomes:
        failed = o.status in (Status.SURVIVED, Status.LAB_ERROR)
        skipped = o.status in (Status.BUILD_FAILED, Status.EQUIVALENT)
        cases.append(junit_xml.Case(
            f"mutate.{o.operator}", f"{o.key} {o.summary}", o.build_s + o.test_s,
            failure=("survived: no case failed" if o.status == Status.SURVIVED
                     else f"the lab broke: {o.detail[:200]}") if failed else None,
            failure_text=o.diff if failed else "",
            skipped=f"{o.status}: {o.detail[:200]}" if skipped else None))
    name = f"lab mutate {report.variant}"
    return junit_xml.render(name, [junit_xml.Suite(name, tuple(cases))])
