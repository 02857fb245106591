"""Command line: parses, calls the stages, maps errors to exit codes.

Signals are handled here and only here: SIGTERM becomes the same unwinding
as Ctrl-C, so every context manager below tears its VM down.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import config, pipeline
from lab.errors import ConfigError, LabError
from lab.pipeline import VariantRequest
from lab.ui import Ui

EXIT_INTERRUPTED = 130


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so `with` blocks clean up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


# --- shared arguments ----------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="lab.toml to read (default: ./lab.toml if any)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], help="accelerator (default auto)")
    p.add_argument("--results", type=Path, help="results folder (default results/<run-id>/)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")


def _add_variants(p: argparse.ArgumentParser, *, many: bool = True) -> None:
    if many:
        p.add_argument("--variant", action="append", default=[], metavar="NAME",
                       help="baseline, v1..v5, patched, user, tree (repeatable or a,b,c)")
    p.add_argument("--debug", action="store_true", help="add the lockdep/debug config fragment")
    p.add_argument("--patch", action="append", type=Path, default=[], metavar="FILE",
                   help="your patch on top of the baseline: variant `user` (repeatable)")
    p.add_argument("--kernel-tree", type=Path, metavar="PATH",
                   help="your kernel tree, as it is: variant `tree` (never modified)")
    p.add_argument("--expect", action="append", default=[], metavar="FEATURE",
                   help="what your patch or tree claims, e.g. parallel-direct-writes")


def _request(args: argparse.Namespace, names: list[str]) -> VariantRequest:
    return VariantRequest(
        names=tuple(names),
        debug=args.debug,
        patches=tuple(args.patch),
        expect=tuple(args.expect),
        kernel_tree=args.kernel_tree,
    )


def _cfg(args: argparse.Namespace) -> config.LabConfig:
    cfg = config.load(args.config)
    if getattr(args, "accel", None):
        from dataclasses import replace

        cfg = replace(cfg, vm=replace(cfg.vm, accel=args.accel))
    return cfg


def _results_dir(cfg: config.LabConfig, args: argparse.Namespace, prefix: str) -> Path:
    out = args.results or cfg.results_root / pipeline.new_run_id(prefix)
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


# --- commands -------------------------------------------------------------------


def cmd_build(args: argparse.Namespace, ui: Ui) -> int:
    cfg = _cfg(args)
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
    vs = pipeline.resolve_variants(cfg, _request(args, [args.variant_name]), out)
    build = pipeline.build_variants(cfg, vs, out, ui)[0]
    img = pipeline.image(cfg, out, ui)
    accel = pipeline.accelerator(cfg, build.bzimage, out, ui)
    return cfg, out, build, img, accel


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
                return subprocess.call(
                    ["ssh", "-i", str(img.ssh_key), "-p", str(vm.ssh_port),
                     "-o", f"UserKnownHostsFile={known.name}", "-o", "StrictHostKeyChecking=yes",
                     "root@127.0.0.1"])
        result = guest.run(args.command, timeout=args.timeout)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.exit_status


def cmd_doctor(args: argparse.Namespace, ui: Ui) -> int:
    from lab import doctor

    cfg = _cfg(args)
    checks = doctor.run_checks(cfg)
    for c in checks:
        mark = "[green]ok[/]  " if c.ok else "[red]FAIL[/]"
        ui.console.print(f"{mark} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            ui.console.print(f"       fix: {c.fix}")
    return 0 if all(c.ok for c in checks if not c.name.startswith("kvm")) else 3


# --- entry point ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("build", help="build kernel variants (cached, incremental)")
    _add_common(p)
    _add_variants(p)
    p.add_argument("--json", action="store_true", help="print name, bzImage, sha256, seconds")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("image", help="build the guest root image (cached)")
    _add_common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("boot", help="boot a variant and keep it up until Ctrl-C")
    _add_common(p)
    p.add_argument("variant_name", metavar="VARIANT")
    _add_variants(p, many=False)
    p.set_defaults(func=cmd_boot)

    p = sub.add_parser("ssh", help="boot a variant, run a command (or a shell), shut down")
    _add_common(p)
    p.add_argument("variant_name", metavar="VARIANT")
    _add_variants(p, many=False)
    p.add_argument("--timeout", type=float, default=300.0, help="command timeout (s, KVM-scale)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=cmd_ssh)

    p = sub.add_parser("doctor", help="check the host and say what to install")
    _add_common(p)
    p.set_defaults(func=cmd_doctor)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ui = Ui()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args, ui)
    except ConfigError as exc:
        ui.error(exc.describe())
        return exc.exit_code
    except LabError as exc:
        ui.error(exc.describe())
        return exc.exit_code
    except (KeyboardInterrupt, Terminated):
        ui.error("interrupted; everything started was stopped")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
