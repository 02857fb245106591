"""`lab bisect`: the bisect algorithm (lab/bisect/search.py) fed by real builds and VMs.

Each step builds one candidate (incrementally: versions share the source
copy, commits share one private clone), boots it in a fresh VM, runs one
case `--repeat` times and turns the outcomes into a verdict. A candidate
that does not build or whose patch does not apply is SKIP; a broken host or
guest is retried and then aborts the bisection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from lab import pipeline, verdict
from lab.bisect import search
from lab.bisect.search import BisectResult, InfraFailure, Step, Verdict
from lab.config import LabConfig
from lab.errors import ConfigError, LabError
from lab.host import cache
from lab.kernel import gittree, sources, variants
from lab.kernel.build import Variant
from lab.kernel.series import check_features, load_series
from lab.suite import catalog, checks, spec
from lab.ui import Ui
from lab.verdict import FlakePolicy
from lab.vm.image import Image


def _one_case(expr: str) -> spec.Case:
    cases = catalog.select(expr)  # an exact name or number is that case alone
    if len(cases) > 1:
        raise ConfigError(f"--test {expr!r} matches several cases: "
                          f"{', '.join(c.name for c in cases)}")
    return cases[0]


class _Tester:
    """Build, boot, run one case; one call per bisect step."""

    def __init__(self, cfg: LabConfig, case: spec.Case, repeat: int, out: Path, ui: Ui,
                 make_variant, policy: FlakePolicy | None = None) -> None:
        self.cfg = cfg
        self.case = case
        self.repeat = repeat
        self.policy = policy or FlakePolicy()
        self.out = out
        self.ui = ui
        self.make_variant = make_variant
        self.image: Image | None = None

    def __call__(self, candidate: str) -> Step:
        """Build, boot and run the case; lab/verdict.py says what a failure means."""
        start = time.monotonic()
        log_dir = self.out / search.short(candidate)
        try:
            variant: Variant = self.make_variant(candidate)
            self.image = self.image or pipeline.image(self.cfg, self.out, self.ui)
            p = pipeline.prepare_variants(self.cfg, [variant], log_dir, self.ui, self.image)
            build = p.builds[variant.name]
            built_s = time.monotonic() - start
            with pipeline.deployed(self.cfg, p, variant.name, log_dir, self.ui) as (vm, guest):
                run = checks.run_case(self.case, guest, candidate, build.features,
                                      self.repeat, self.policy)
                boot_s = vm.boot_seconds
        except LabError as exc:
            outcome = verdict.classify(exc)
            if outcome is verdict.Outcome.LAB_BROKE:
                raise InfraFailure(f"{candidate}: {str(exc).splitlines()[0]}",
                                   log_path=exc.log_path, excerpt=exc.excerpt) from exc
            bad = outcome is verdict.Outcome.KERNEL_FAILED
            return Step(candidate, -1, Verdict.BAD if bad else Verdict.SKIP,
                        time.monotonic() - start,
                        f"{'kernel failed' if bad else 'cannot test'}: "
                        f"{str(exc).splitlines()[0]}", {"console": exc.excerpt[-2000:]},
                        untestable=not bad)
        step_verdict = {verdict.RunsVerdict.PASS: Verdict.GOOD,
                        verdict.RunsVerdict.FAIL: Verdict.BAD,
                        verdict.RunsVerdict.FLAKY: Verdict.SKIP}[run.verdict]
        return Step(candidate, -1, step_verdict, time.monotonic() - start,
                    run.result.observed,
                    {"build_s": round(built_s, 1), "boot_s": round(boot_s, 1),
                     "cached_build": build.cached, "release": build.release,
                     **({"console": run.result.console_excerpt[-2000:]}
                        if run.result.console_excerpt else {})})


@dataclass(frozen=True)
class BisectRequest:
    """What `lab bisect` was asked: a case, and a series or a git range."""

    test: str
    series: Path | None = None
    kernel_tree: Path | None = None
    good: str | None = None
    bad: str | None = None
    expect: tuple[str, ...] = ()
    repeat: int = 1
    first_bad: bool = False
    flake_threshold: float = 0.5


def run(cfg: LabConfig, args: BisectRequest, out: Path, ui: Ui) -> BisectResult:
    case = _one_case(args.test)
    if bool(args.series) == bool(args.kernel_tree):
        raise ConfigError("lab bisect needs exactly one of --series DIR or --kernel-tree PATH")
    if args.series:
        series = load_series(args.series.resolve())
        source = sources.resolve(series.source, cfg.cache_root, out)
        candidates = [v.name for v in series.versions]
        looking_for = "first-bad" if args.first_bad else "first-good"
        verify_ends = True
        scfg = replace(cfg, series=series.folder)

        def make_variant(name: str) -> Variant:
            return variants.resolve([name], cfg=scfg, series=series, source=source)[0]
    else:
        if not (args.good and args.bad):
            raise ConfigError("--kernel-tree bisection needs --good REV and --bad REV")
        repo = args.kernel_tree.expanduser().resolve()
        good = search.resolve(repo, args.good)
        bad = search.resolve(repo, args.bad)
        # The older end is where we start; a "bad" older than "good" means we
        # are looking for the fix, as with git bisect's old/new terms.
        if _is_ancestor(repo, good, bad):
            candidates, looking_for = search.rev_list(repo, good, bad), "first-bad"
        elif _is_ancestor(repo, bad, good):
            candidates, looking_for = search.rev_list(repo, bad, good), "first-good"
        else:
            raise ConfigError(f"--good {args.good} and --bad {args.bad} are not on one line")
        verify_ends = False
        features = check_features(list(args.expect), "--expect")

        def make_variant(rev: str) -> Variant:
            # One private clone per tree; the build checks `rev` out under its lock.
            src = sources.git_source(repo, rev, cfg.cache_root, out, what="candidate")
            return Variant("tree", src, (), tuple(cfg.fragments), features)

    tester = _Tester(cfg, case, args.repeat, out, ui, make_variant,
                     FlakePolicy(args.flake_threshold))

    def show(step: Step) -> None:
        ui.note(search.format_step(step))

    ui.note(f"bisecting {len(candidates)} candidates for the {looking_for} of {case.name}")
    start = time.monotonic()
    result = search.bisect(candidates, tester, looking_for=looking_for, verify_ends=verify_ends,
                           on_step=show)
    result = _settle_unbuildable(result)
    cache.write_json(out / "bisect.json", {**result.to_dict(), "case": case.name,
                                           "seconds": round(time.monotonic() - start, 1)})
    return result


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    res = gittree.git(repo, "merge-base", "--is-ancestor", older, newer, timeout=60,
                      check=False)
    return res.exit_status == 0


def _settle_unbuildable(result: BisectResult) -> BisectResult:
    """Name the answer when the only doubt is commits that could not be built.

    git bisect would say "could be any of: <broken> <fix>". A commit that does
    not build cannot have been the one that changed the behaviour *as built*,
    so the first tested candidate after it is the answer; the skipped ones
    are named in the message so the caveat is not lost.
    """
    if result.first or not result.inconclusive:
        return result
    by_name = {s.candidate: s for s in result.steps}
    *skipped, tested = result.inconclusive
    unbuildable = [by_name.get(c) for c in skipped]
    if tested not in by_name or not all(
            s and s.verdict == Verdict.SKIP and s.untestable
            for s in unbuildable):
        return result
    names = " ".join(search.short(c) for c in skipped)
    return replace(result, first=tested, message=(
        f"{result.looking_for.replace('-', ' ')}: {search.short(tested)} "
        f"(before it, {names} could not be built and was skipped)"))
