"""Command line: parses, calls the stages, maps errors to exit codes.

Signals are handled here and only here: SIGTERM becomes the same unwinding
as Ctrl-C, so every context manager below tears its VM down.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from lab import config, pipeline, usage, verdict
from lab.bisect import job as bisect_job
from lab.errors import ConfigError, LabError
from lab.host import cache, proc
from lab.jobs import bootsoak, calibrate, doctor, keys, runs, selftime, soak
from lab.jobs.runs import compared_pair
from lab.kernel import features, implied, kselftest, kunit
from lab.mutate import job as mutate_job
from lab.pipeline import VariantRequest
from lab.report import compare, document, write
from lab.results import RunResults, merge
from lab.shard import parse_shard
from lab.suite import catalog, scripts
from lab.ui import Ui

EXIT_INTERRUPTED = 130
INTERACTIVE_LIMIT_S = 24 * 3600.0  # an interactive `lab ssh` shell


class Terminated(BaseException):
    """SIGTERM or SIGHUP (a closed terminal, a dropped SSH session), raised in
    the main thread so `with` blocks clean up, as Ctrl-C does."""


def _on_terminate(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def _with_scripts(cfg: config.LabConfig, args: argparse.Namespace) -> config.LabConfig:
    """Add --script files to lab.toml's, checked now: bad input exits 2 before any build."""

    scripts.resolve(cfg.tests.scripts, "[tests] scripts")
    given = scripts.resolve(args.script, "--script")
    tests = replace(cfg.tests, scripts=(*cfg.tests.scripts, *(str(s.path) for s in given)))
    scripts.resolve(tests.scripts, "--script and [tests] scripts")  # distinct names
    if args.script_timeout is not None:
        tests = replace(tests, script_timeout_s=args.script_timeout)
    if args.lanes is not None:
        tests = replace(tests, lanes=args.lanes)
        tests.validate("--lanes")
    if args.keep_going:
        tests = replace(tests, keep_going=True)
    targets = kselftest.split_targets([*tests.kselftests, *args.kselftest],
                                      "--kselftest and [tests] kselftests")
    tests = replace(tests, kselftests=targets)
    if args.kunit is not None:
        tests = replace(tests, kunit=args.kunit)
    if tests.kunit:
        kunit.check_glob(tests.kunit)
    if args.kunitconfig is not None:
        if not args.kunitconfig.is_file():
            raise ConfigError(f"--kunitconfig {args.kunitconfig}: no such file")
        tests = replace(tests, kunitconfig=str(args.kunitconfig.resolve()))
    if tests.kunitconfig and not tests.kunit:
        raise ConfigError("--kunitconfig configures --kunit GLOB; give the suites to run")
    return replace(cfg, tests=tests)


def kernel_tree_here(cwd: Path) -> bool:
    """A kernel source tree's top (a git work tree, a worktree or a tarball)."""
    return all((cwd / f).is_file() for f in ("Makefile", "Kconfig")) and (cwd / "fs").is_dir()


def _request(args: argparse.Namespace, names: list[str]) -> VariantRequest:
    tree = args.kernel_tree
    if tree is None and not getattr(args, "series", None) and kernel_tree_here(Path.cwd()):
        # Run from inside a kernel tree: that tree is the one under test.
        tree = Path.cwd()
        logging.getLogger("lab").warning(
            "running inside the kernel tree %s: testing it (as --kernel-tree .)", tree)
    return VariantRequest(
        names=tuple(names),
        debug=args.debug,
        patches=tuple(args.patch),
        expect=tuple(args.expect),
        kernel_tree=tree,
        base=args.base,
        head=args.head,
        strict=args.strict,
        kconfig=args.kconfig,
        fragments=tuple(args.fragment),
    )


def _materialize_streams(patches: list[Path], cache_root: Path) -> list[Path]:
    """`--patch -` (stdin) and `--patch <(b4 am -o - MSGID)` (a pipe) are read
    once and kept by content in the cache, so a build, its key and reproduce.sh
    see a regular file."""
    kept = []
    for given in patches:
        if str(given) == "-":
            data = sys.stdin.buffer.read()
        elif given.exists() and not given.is_file():
            data = given.read_bytes()
        else:
            kept.append(given)
            continue
        if not data.strip():
            raise ConfigError(f"--patch {given}: the stream held nothing")
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = cache_root / "patches" / f"stream-{digest}.patch"
        if not path.is_file():
            cache.write_atomic(path, data)
        kept.append(path)
    return kept


def _cfg(args: argparse.Namespace) -> config.LabConfig:
    cfg = config.load(args.config)
    if getattr(args, "patch", None):
        args.patch = _materialize_streams(args.patch, cfg.cache_root)
    if getattr(args, "series", None):
        cfg = replace(cfg, series=args.series.expanduser().resolve())
    if getattr(args, "accel", None):
        cfg = replace(cfg, vm=replace(cfg.vm, accel=args.accel))
    return cfg


def _results_dir(cfg: config.LabConfig, args: argparse.Namespace, prefix: str) -> Path:
    out = args.results or cfg.results_root / pipeline.new_run_id(prefix)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A read-only or full folder is bad input: say so now, not after the builds.
        with tempfile.TemporaryFile(dir=out) as probe:
            probe.write(b"x")
            probe.flush()
    except OSError as exc:
        where = "--results" if args.results else "[lab] results_root"
        raise ConfigError(f"{where} {out}: cannot write there: {exc.strerror or exc}") from None
    return out.resolve()


# --- commands -------------------------------------------------------------------


def cmd_build(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    if args.print_cache_key:
        key = keys.for_request(cfg, _request(args, args.variant))
        print(json.dumps(key.to_dict(), indent=2) if args.json else "\n".join(key.lines()))
        return 0
    log_dir = args.results.resolve() if args.results else cfg.cache_root / "logs"
    vs = pipeline.resolve_variants(cfg, _request(args, args.variant), log_dir)
    builds = pipeline.build_variants(cfg, vs, log_dir, ui)
    if args.json:
        print(json.dumps([b.to_dict() for b in builds], indent=2))
    return 0


def cmd_image(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    img = pipeline.image(cfg, cfg.cache_root / "logs", ui)
    if args.json:
        print(json.dumps(img.to_dict(), indent=2))
    else:
        print(img.rootfs)
    return 0


def _boot_one(args: argparse.Namespace, ui: Ui, prefix: str):
    cfg = _cfg(args)
    out = _results_dir(cfg, args, prefix)
    p = pipeline.prepare(cfg, _request(args, [args.variant_name]), out, ui)
    (build,) = p.builds.values()
    return cfg, out, build, p.image, p.accel


def cmd_boot(args: argparse.Namespace, ui: Ui) -> int:
    cfg, out, build, img, accel = _boot_one(args, ui, "boot-")
    with pipeline.booted(cfg, build, img, accel, out) as (vm, _guest):
        known = out / "known_hosts"
        known.write_text(f"[127.0.0.1]:{vm.ssh_port} {img.host_key}\n")
        ui.note(f"{build.variant} ({build.release}) up in {vm.boot_seconds:.1f}s; reach it with:")
        print(f"ssh -i {img.ssh_key} -p {vm.ssh_port} -o UserKnownHostsFile={known} "
              "-o StrictHostKeyChecking=yes root@127.0.0.1", flush=True)
        ui.note(f"console log: {vm.console_log}; Ctrl-C to stop")
        while True:
            vm.check_alive("while booted")
            time.sleep(1)


def cmd_ssh(args: argparse.Namespace, ui: Ui) -> int:
    cfg, out, build, img, accel = _boot_one(args, ui, "ssh-")
    with pipeline.booted(cfg, build, img, accel, out) as (vm, guest):
        if not args.command:
            with tempfile.NamedTemporaryFile("w", suffix=".known_hosts") as known:
                known.write(f"[127.0.0.1]:{vm.ssh_port} {img.host_key}\n")
                known.flush()
                # Keep-alives end the session when the VM dies under it.
                return proc.interactive(
                    ["ssh", "-i", str(img.ssh_key), "-p", str(vm.ssh_port),
                     "-o", f"UserKnownHostsFile={known.name}", "-o", "StrictHostKeyChecking=yes",
                     "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6",
                     "root@127.0.0.1"], timeout=INTERACTIVE_LIMIT_S, what="ssh")
        result = guest.run(" ".join(args.command), timeout=args.timeout)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.exit_status


def cmd_doctor(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    checks = doctor.run_checks(cfg)
    for c in checks:
        mark = "[green]ok[/]  " if c.ok else "[red]FAIL[/]"
        ui.console.print(f"{mark} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            ui.console.print(f"       fix: {c.fix}")
    # Unusable KVM is a fact to report, not a failure: the lab falls back to TCG.
    return 0 if all(c.ok for c in checks if c.required) else 3


def _shard(args: argparse.Namespace):
    return parse_shard(args.shard) if args.shard else None


def _argv_for_reproducer() -> list[str]:
    return sys.argv[1:]


def cmd_test(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _with_scripts(_cfg(args), args)
    if args.flake_threshold is not None:
        cfg = replace(cfg, tests=replace(cfg.tests, flake_threshold=args.flake_threshold))
    catalog.select(args.k)  # a -k that matches no case is bad input: say so before any build
    out = _results_dir(cfg, args, "test-")
    results = runs.test_job(cfg, _request(args, args.variant), out, ui, case_expr=args.k,
                            repeat=args.repeat, shard=_shard(args),
                            argv=_argv_for_reproducer(), fresh=args.fresh)
    print(runs.checks_matrix(results))
    for c in results.checks:
        if not c.passed:
            print(f"FAIL {c.variant} {c.name}: expected {c.expected}; observed {c.observed}")
    ui.note(f"results: {out}")
    if args.bisect_run:
        return verdict.bisect_verdict([c.runs_verdict for c in results.checks])
    return 0 if all(c.passed for c in results.checks) else 1


def _bench_cfg(cfg: config.LabConfig, args: argparse.Namespace) -> config.LabConfig:
    bench = cfg.bench
    changes = {}
    if args.workload:
        changes["workloads"] = tuple(w for v in args.workload for w in v.split(","))
    if args.jobs:
        try:
            changes["jobs"] = tuple(int(j) for v in args.jobs for j in v.split(","))
        except ValueError:
            raise ConfigError(f"--jobs: numbers separated by commas, not {args.jobs}") from None
    if args.mode:
        changes["modes"] = tuple(m for v in args.mode for m in v.split(","))
    if args.repeat:
        changes["repeat"] = args.repeat
    if args.job_file:
        changes["job_file"] = str(args.job_file.resolve())
    if changes:
        bench = replace(bench, **changes)
        bench.validate("command line")
    return replace(cfg, bench=bench)


def cmd_run(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _bench_cfg(_cfg(args), args)
    if args.cmd == "run":
        cfg = _with_scripts(cfg, args)
    out = _results_dir(cfg, args, "run-")
    ui.note(f"results: {out}")
    results = runs.main_job(cfg, out, ui, req=_request(args, args.variant), shard=_shard(args),
                            argv=_argv_for_reproducer(), with_checks=args.cmd == "run",
                            fresh=args.fresh, case_expr=getattr(args, "k", None))
    print(runs.summary_table(results))
    if results.checks:
        print(runs.checks_matrix(results))
    ui.note(f"report: {out / 'report.md'} and report.html")
    return 0 if all(c.passed for c in results.checks) else 1


def cmd_report(args: argparse.Namespace, ui: Ui) -> int:
    shards = []
    for d in args.merge:
        path = d / "results.json" if d.is_dir() else d
        if not path.is_file():
            raise ConfigError(f"{d}: no results.json")
        shards.append(RunResults.load(path))
    merged = runs.judged(merge(shards))  # the base's runs may come from another shard
    args.out.mkdir(parents=True, exist_ok=True)

    paths = write.write_report(merged, args.out, *compared_pair(merged))
    ui.note(f"merged {len(shards)} result sets into {paths['markdown'].parent}")
    return 0 if all(c.passed for c in merged.checks) else 1


def cmd_compare(args: argparse.Namespace, ui: Ui) -> int:
    paths, summary = compare.write_comparison(
        args.run_a, args.run_b, args.out, variant_a=args.variant_a, variant_b=args.variant_b,
        force=args.force)
    print(summary)
    ui.note(f"comparison: {paths['markdown']} and {paths['html']}")
    return 0


def cmd_mutate(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    names = args.variant or ([] if args.patch else ["patched"])
    if len(names) > 1:
        raise ConfigError("lab mutate takes one --variant (or --patch)")
    out = _results_dir(cfg, args, "mutate-")
    req = mutate_job.MutateRequest(_request(args, names), limit=args.max, seed=args.seed,
                                   shard=_shard(args), equivalents=args.equivalents,
                                   only=tuple(args.mutant))
    report = mutate_job.run(cfg, req, out, ui)
    print((out / "mutate.md").read_text())
    ui.note(f"kill matrix: {out / 'mutate.md'}, {out / 'mutate.json'}, {out / 'junit.xml'}")
    if any(o.status == mutate_job.Status.LAB_ERROR for o in report.outcomes):
        return 3  # some mutants have no verdict: the lab broke on them (the matrix says which)
    return 1 if any(o.status == mutate_job.Status.SURVIVED for o in report.outcomes) else 0


def cmd_fsx(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    soak.options_from(args)  # bad options: exit 2 before anything is built
    out = _results_dir(cfg, args, "fsx-")
    return soak.main(cfg, _request(args, args.variant), out, ui, args)


def cmd_bisect(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    out = _results_dir(cfg, args, "bisect-")
    req = bisect_job.BisectRequest(
        test=args.test, series=args.series, kernel_tree=args.kernel_tree, good=args.good,
        bad=args.bad, expect=tuple(args.expect), repeat=args.repeat, first_bad=args.first_bad,
        flake_threshold=args.flake_threshold)
    result = bisect_job.run(cfg, req, out, ui)
    print(result.message)
    ui.note(f"step log: {out / 'bisect.json'}")
    return 0 if result.first else 1


def cmd_selftime(args: argparse.Namespace, ui: Ui) -> int:
    req = selftime.request_from(args)  # bad options: exit 2 before anything starts
    cfg = _cfg(args)
    if args.machine:
        cfg = replace(cfg, vm=replace(cfg.vm, machine=args.machine))
    out = _results_dir(cfg, args, "selftime-")
    report = selftime.run(cfg, req, out, ui)
    print(selftime.render(report))
    ui.note(f"figures: {out / 'selftime.json'} and selftime.txt")
    return 0


def cmd_bootsoak(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    out = _results_dir(cfg, args, "bootsoak-")
    names = args.variant or ["baseline", "patched"]
    p = pipeline.prepare(cfg, _request(args, names), out, ui)
    soaks = bootsoak.run(cfg, p, args.boots, out, ui)
    text = document.text(f"boot soak, {args.boots} boots per variant ({p.accel.name})",
                         [document.Block("boots", tables=(bootsoak.table(soaks),))])
    (out / "bootsoak.txt").write_text(text)
    print(text)
    return 0 if not any(s.failed for s in soaks) else verdict.EXIT_LAB_BROKE


def cmd_features(args: argparse.Namespace, ui: Ui) -> int:
    """Every feature a variant can claim, and what a tree implies."""
    tree = args.kernel_tree.resolve() if args.kernel_tree else None
    if tree is None and kernel_tree_here(Path.cwd()):
        tree = Path.cwd()
    if tree and not kernel_tree_here(tree):
        raise ConfigError(f"--kernel-tree {tree}: not a kernel source tree "
                          "(no Makefile, Kconfig and fs/ at its top)")
    found = implied.detect_in_folder(tree) if tree else {}
    for name, meaning in features.FEATURES.items():
        mark = ""
        if tree:
            ev = found.get(name)
            regardless = name in implied.REGARDLESS
            mark = (f"  [{'implied' if regardless else 'defined'} by {tree.name}: "
                    f"{ev.path}: {ev.what}]" if ev else f"  [not in {tree.name}]")
        print(f"{name}{mark}\n    {meaning}\n")
    if tree:
        kept = [f for f in implied.REGARDLESS if f in found]
        print(f"a variant built from {tree} claims {', '.join(kept) or 'nothing'} by itself; "
              "add what your patch claims with --expect")
    return 0


def cmd_calibrate(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
    only = tuple(p.strip() for p in (args.k or "").split(",") if p.strip())
    calibrate.chosen(cfg.series, only)  # no witness to run is bad input: exit 2 now
    out = _results_dir(cfg, args, "calibrate-")
    result = calibrate.run(cfg, calibrate.CalibrateRequest(args.repeat, only, args.jobs), out, ui)
    text = document.text(f"calibration of {result.series}, {result.repeat} runs each",
                         [document.Block("witnesses", tables=(result.table(),))])
    (out / "calibration.txt").write_text(text)
    print(text)
    return 0 if result.ok else verdict.EXIT_KERNEL_FAILED


# --- entry point ----------------------------------------------------------------


COMMANDS = {
    "build": cmd_build, "image": cmd_image, "boot": cmd_boot, "ssh": cmd_ssh,
    "doctor": cmd_doctor, "test": cmd_test, "bench": cmd_run, "run": cmd_run,
    "report": cmd_report, "compare": cmd_compare, "mutate": cmd_mutate, "fsx": cmd_fsx,
    "bisect": cmd_bisect, "bootsoak": cmd_bootsoak, "features": cmd_features,
    "calibrate": cmd_calibrate, "selftime": cmd_selftime,
}


def main(argv: list[str] | None = None) -> int:
    parser = usage.build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `lab ssh VARIANT [options] -- CMD...`: options before `--` are the lab's.
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    # Under git bisect run, anything that is not about the commit aborts the
    # bisection (128): a bad command line included, which argparse exits 2 on.
    bisect_run = "--bisect-run" in argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if bisect_run and exc.code not in (0, None):
            return verdict.BISECT_ABORT
        raise
    if command and args.cmd != "ssh":
        parser.error("only `lab ssh` takes a command after --")
    args.command = command
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # A guest that powers off (or is still booting) resets the SSH socket;
        # the lab reports SSH failures itself, once, where they decide something.
        logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
    ui = Ui()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_terminate)
    try:
        return COMMANDS[args.cmd](args, ui)
    except LabError as exc:
        ui.error(exc.describe())
        return verdict.bisect_code(exc) if bisect_run else verdict.exit_code(exc)
    except (KeyboardInterrupt, Terminated):
        ui.error("interrupted; everything started was stopped")
        return verdict.BISECT_ABORT if bisect_run else EXIT_INTERRUPTED
    except Exception:
        # A bug or an unexpected host failure: never exit 1, which means
        # "the kernel failed a test" (and "bad" to git bisect run).
        ui.console.print_exception()
        ui.error("internal error (the traceback above is a bug report)")
        return verdict.BISECT_ABORT if bisect_run else 3


if __name__ == "__main__":
    sys.exit(main())
