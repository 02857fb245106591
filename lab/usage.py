"""The command line's grammar: every command, its options and their checks, and what
`lab --help` tells a user (what the lab does, the common commands, examples).
lab.cli runs the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.jobs import soak

DESCRIPTION = """\
Validate a kernel patch end to end: build the kernel with and without it,
boot each in a QEMU VM (KVM when a probe boot proves it works, else TCG), run
the regression and concurrency suite against the real kernels, benchmark
patched against unpatched with fio over a FUSE server, and write a report
(report.md, report.html, junit.xml, results.json, reproduce.sh) to
results/<run-id>/. The first case is FUSE's parallel direct writes
(FOPEN_PARALLEL_DIRECT_WRITES, fs/fuse/file.c)."""

EPILOG = """\
common commands:
  lab run                  the main job: build, suite on every variant, benchmark, report
  lab test                 the suite only (a case x variant matrix; -k CASE for some)
  lab bench                the fio benchmark only
  lab doctor               check this host and say what to install
  lab ssh VARIANT -- CMD   boot a variant, run CMD in it, shut it down

examples:
  lab run                                        baseline vs patched, the default experiment
  lab test --variant baseline,v1,v2,patched      versions of the series (series.toml)
  lab test --patch my-fix.patch --expect parallel-direct-writes
  lab bench --job-file examples/ssf.fio --jobs 1,2,4,8 --mode latency
  lab bisect --series patches/fuse-parallel-dio --test truncate-race --first-good
  lab compare results/RUN_A results/RUN_B        two runs' benchmarks side by side
  lab report --merge results/shard-* --out results/merged

variants: baseline, the series' versions (v1..vN), patched (the newest), user (--patch FILE),
tree (--kernel-tree PATH). Settings: lab.toml (--config). Cache:
${LAB_CACHE:-~/.cache/kernel-lab}, shared by concurrent runs.
exit codes: 0 ok, 1 a check failed, 2 bad input, 3 infrastructure failure,
130 interrupted. `lab COMMAND --help` lists a command's options."""


def _number(parse, kind: str, accept, rule: str):
    """An argparse type: `parse` the text, then `accept` the value or name the `rule`."""
    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind}: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
        return value
    return check


positive_int = _number(int, "number", lambda v: v >= 1, "at least 1")
positive_float = _number(float, "number", lambda v: v > 0, "positive")
fraction = _number(float, "number", lambda v: 0.0 < v <= 1.0, "in (0, 1]")
non_negative_int = _number(int, "whole number", lambda v: v >= 0, "0 or more")


# --- shared arguments ----------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="lab.toml to read (default: ./lab.toml, else "
                   "~/.config/kernel-lab/lab.toml, if any)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], help="accelerator (default auto)")
    p.add_argument("--results", type=Path, help="results folder (default results/<run-id>/)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")


def _add_variants(p: argparse.ArgumentParser, *, many: bool = True) -> None:
    if many:
        p.add_argument("--variant", action="append", default=[], metavar="NAME",
                       help="baseline, the series' versions, patched, user, tree (repeatable or "
                            "a,b,c)")
    p.add_argument("--debug", action="store_true", help="add the lockdep/debug config fragment")
    p.add_argument("--patch", action="append", type=Path, default=[], metavar="FILE",
                   help="your patch on top of the baseline: variant `user` (repeatable)")
    p.add_argument("--kernel-tree", type=Path, metavar="PATH",
                   help="your kernel tree, as it is: variant `tree` (never modified; the "
                        "default when run from inside a kernel tree)")
    p.add_argument("--kconfig", metavar="FILE|TARGET",
                   help="where the config starts: your .config, or a make target such as "
                        "defconfig (default tinyconfig); the lab's options go on top")
    p.add_argument("--fragment", action="append", type=Path, default=[], metavar="FILE",
                   help="another config fragment on top (repeatable): a file, or one the lab "
                        "ships: sanitizers, lkdtm, debug")
    p.add_argument("--expect", action="append", default=[], metavar="FEATURE",
                   help="what your patch or tree claims, e.g. parallel-direct-writes")
    p.add_argument("--series", type=Path, metavar="DIR",
                   help="the patch series folder (default: lab.toml's, else fuse-parallel-dio)")
    p.add_argument("--base", metavar="REV",
                   help="with --kernel-tree: build REV as `baseline` and the head as `patched`")
    p.add_argument("--head", metavar="REV",
                   help="with --base: the revision to build as `patched` (default: the "
                        "working tree as it is, uncommitted changes included)")
    p.add_argument("--strict", action="store_true",
                   help="refuse patches that apply only with fuzz")


def _add_scripts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--script", action="append", type=Path, default=[], metavar="FILE",
                   help="your own test script, run in every variant's guest (repeatable); "
                        "KTAP/TAP output becomes sub-results")
    p.add_argument("--script-timeout", type=positive_float, metavar="SECONDS",
                   help="time limit per script (KVM-scale; default 300 or lab.toml)")
    p.add_argument("--lanes", type=positive_int, metavar="N",
                   help="suite cases run N at a time in one guest (default 4 or lab.toml's "
                        "[tests] lanes; 1: one by one)")
    p.add_argument("--keep-going", action="store_true",
                   help="run every case even after the kernel crashed or hung the same way "
                        "in several (default: the rest are not run, and say so)")
    p.add_argument("--kselftest", action="append", default=[], metavar="TARGET[,TARGET]",
                   help="kselftest targets of the tree under test (tools/testing/selftests), "
                        "built from each variant's source and run in its guest; judged "
                        "against the base")
    p.add_argument("--kunit", metavar="GLOB",
                   help="KUnit suites matching GLOB, built into each variant and run at "
                        "boot; judged against the base")
    p.add_argument("--kunitconfig", type=Path, metavar="FILE",
                   help="the config options --kunit needs, instead of finding them in the "
                        "source (like kunit.py's .kunitconfig)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("build", help="build kernel variants (cached, incremental)")
    _add_common(p)
    _add_variants(p)
    p.add_argument("--json", action="store_true", help="print name, bzImage, sha256, seconds")
    p.add_argument("--print-cache-key", action="store_true",
                   help="print the cache key and every input of the build keys; build nothing")

    p = sub.add_parser("image", help="build the guest root image (cached)")
    _add_common(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("boot", help="boot a variant and keep it up until Ctrl-C")
    _add_common(p)
    p.add_argument("variant_name", metavar="VARIANT")
    _add_variants(p, many=False)

    p = sub.add_parser("ssh", help="boot a variant, run a command (or a shell), shut down")
    _add_common(p)
    p.add_argument("variant_name", metavar="VARIANT")
    _add_variants(p, many=False)
    p.add_argument("--timeout", type=float, default=300.0, help="command timeout (s, KVM-scale)")
    p.set_defaults(command=[])
    p.epilog = "Everything after `--` is the command, run by the guest's shell as ssh(1) does."

    p = sub.add_parser("doctor", help="check the host and say what to install")
    _add_common(p)

    p = sub.add_parser("test", help="run the regression suite on variants")
    _add_common(p)
    _add_variants(p)
    p.add_argument("-k", metavar="EXPR",
                   help="cases named EXPR exactly, else whose name contains EXPR "
                        "(a,b for several)")
    p.add_argument("--repeat", type=positive_int, default=1,
                   help="run each case N times (flake check)")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N")
    p.add_argument("--fresh", action="store_true",
                   help="run every check again, even where cached verdicts of the same "
                        "inputs exist")
    p.add_argument("--bisect-run", action="store_true",
                   help="exit codes for git bisect run: 0 good, 1 bad, 125 this commit cannot "
                        "be tested (or a case is flaky), 128 abort (bad input, the lab broke)")
    p.add_argument("--flake-threshold", type=fraction, metavar="F",
                   help="with --repeat: a case failing at least this fraction of its runs "
                        "fails, below it is flaky (default 0.5; a skip to --bisect-run)")
    _add_scripts(p)

    for name, helptext in (("bench", "benchmark variants with fio over FUSE"),
                           ("run", "the main job: build, boot, check, benchmark, report")):
        p = sub.add_parser(name, help=helptext)
        _add_common(p)
        _add_variants(p)
        p.add_argument("--workload", action="append", help="ssf, ssf-presized, fpj")
        p.add_argument("--jobs", action="append", help="numjobs list, e.g. 1,2,4,8")
        p.add_argument("--mode", action="append", help="null, latency")
        p.add_argument("--repeat", type=positive_int, help="repeats per point")
        p.add_argument("--job-file", type=Path, metavar="FILE",
                       help="your own fio job file (no directory=; run on the FUSE mount)")
        p.add_argument("--shard", metavar="K/N", help="run only shard K of N")
        p.add_argument("--fresh", action="store_true",
                       help="run the suite again even where cached verdicts exist")
        if name == "run":
            _add_scripts(p)
            p.add_argument("-k", metavar="EXPR",
                           help="run only the suite's cases named EXPR, else whose "
                                "name contains it")

    p = sub.add_parser("report", help="merge shard results into one report")
    p.add_argument("--merge", nargs="+", type=Path, required=True, metavar="DIR")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("compare", help="compare two runs' benchmarks (same table and rule)")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="results folder or results.json")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run compared against RUN_A")
    p.add_argument("--out", type=Path, metavar="DIR", help="default: next to RUN_B")
    p.add_argument("--variant-a", metavar="NAME", help="RUN_A's variant (default: match names)")
    p.add_argument("--variant-b", metavar="NAME", help="RUN_B's variant (default: match names)")
    p.add_argument("--force", action="store_true", help="compare despite differing settings")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("mutate", help="mutation testing: does the suite catch broken versions "
                       "of the patch?")
    _add_common(p)
    _add_variants(p)
    p.add_argument("--max", type=positive_int, metavar="N", help="run at most N mutants")
    p.add_argument("--seed", type=non_negative_int, metavar="S",
                   help="draw the mutants in a random order from seed S (default: file order)")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N of the mutants")
    p.add_argument("--mutant", action="append", default=[], metavar="KEY",
                   help="run only this mutant (repeatable), e.g. the survivors of a run")
    p.add_argument("--equivalents", type=Path, metavar="FILE",
                   help="mutants shown equivalent (default: the series' "
                        "equivalent-mutants.toml)")

    p = sub.add_parser("bisect", help="find the version or commit where a case changes")
    _add_common(p)
    p.add_argument("--series", type=Path, help="a patch series folder (bisect its versions)")
    p.add_argument("--kernel-tree", type=Path, metavar="PATH", help="a git kernel tree")
    p.add_argument("--good", help="known good revision (with --kernel-tree)")
    p.add_argument("--bad", help="known bad revision (with --kernel-tree)")
    p.add_argument("--test", required=True, metavar="CASE", help="case name or unique part")
    p.add_argument("--expect", action="append", default=[], metavar="FEATURE")
    p.add_argument("--repeat", type=positive_int, default=1, help="runs per step (flaky cases)")
    p.add_argument("--flake-threshold", type=fraction, default=0.5, metavar="F",
                   help="with --repeat: a step is bad when at least this fraction of its runs "
                        "fail, flaky (skipped) below it (default 0.5)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--first-good", action="store_true", help="first version that passes")
    which.add_argument("--first-bad", action="store_true", help="first version that fails")

    p = sub.add_parser("fsx", help="soak variants with labfsx, the randomized concurrent "
                       "exerciser, with progress")
    _add_common(p)
    _add_variants(p)
    soak.add_arguments(p)

    p = sub.add_parser("bootsoak", help="boot to SSH N times per variant, alternating; "
                       "failures by kind, boot-time median, p95, max")
    _add_common(p)
    _add_variants(p)
    p.add_argument("--boots", type=positive_int, default=50, help="boots per variant (50)")

    p = sub.add_parser("features", help="what each feature means, and what a kernel tree "
                       "implies by itself")
    p.add_argument("--kernel-tree", type=Path, metavar="PATH",
                   help="the tree to read (default: the current folder if it is one)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")

    p = sub.add_parser("calibrate", help="prove every case can fail: each witness patch of "
                       "the series fails its case every run, the newest version never")
    _add_common(p)
    p.add_argument("--series", type=Path, metavar="DIR",
                   help="the patch series folder whose witnesses/ to run")
    p.add_argument("--repeat", type=positive_int, default=1, help="runs of each (1)")
    p.add_argument("-k", metavar="NAMES", help="only these witnesses or cases (a,b,c)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="witness VMs at a time (1); each case mostly waits on the server, "
                        "so 2 fit on 2 cores")

    p = sub.add_parser("selftime", help="measure the lab's own loop here: boot to SSH, a "
                       "case, a fio run's overhead, a warm lab test --patch")
    _add_common(p)
    p.add_argument("--repeat", type=positive_int, default=3, help="runs per figure (3)")
    p.add_argument("--only", action="append", metavar="FIGURES",
                   help="some of boot,case,fio,patch (default all)")
    p.add_argument("--variant", dest="selftime_variant", default="baseline", metavar="NAME",
                   help="the cached kernel to boot (default baseline)")
    p.add_argument("--case", default="parallel-nonextending", help="the case to time")
    p.add_argument("--machine", choices=["pc", "microvm"], help="QEMU machine type")

    return parser
