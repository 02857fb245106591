"""Composes the stages for the CLI and the test fixtures.

source -> variants -> builds; image; accelerator; boot -> machine + guest.
Each function is a plain call taking and returning typed values.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import cache, kernel, variants
from lab.config import LabConfig
from lab.guest import Guest
from lab.image import Image, build_image
from lab.kernel import KernelBuild, Variant
from lab.machine import Accel, Machine, MachineSpec, probe_accel
from lab.series import Series, load_series
from lab.ui import Ui


def new_run_id(prefix: str = "") -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}-{os.getpid()}"


@dataclass(frozen=True)
class VariantRequest:
    """What the user asked for on the command line."""

    names: tuple[str, ...] = ()
    debug: bool = False
    patches: tuple[Path, ...] = ()
    expect: tuple[str, ...] = ()
    kernel_tree: Path | None = None


def resolve_variants(cfg: LabConfig, req: VariantRequest, log_dir: Path) -> list[Variant]:
    series = load_series(cfg.series)
    names = variants.split_names(req.names)
    tree = kernel.tree_source(req.kernel_tree, cfg.cache_root, log_dir) if req.kernel_tree else None
    # Debian's source is unpacked only if a variant is built from it.
    tree_only = tree is not None and set(names) <= {variants.TREE_VARIANT}
    source = None if tree_only else kernel.debian_source(cfg.cache_root, log_dir)
    return variants.resolve(
        names,
        cfg=cfg,
        series=series,
        source=source,
        debug=req.debug,
        user_patches=req.patches,
        expect=req.expect,
        tree_source=tree,
    )


def build_variants(
    cfg: LabConfig, vs: Sequence[Variant], log_dir: Path, ui: Ui
) -> list[KernelBuild]:
    builds = []
    for v in vs:
        with ui.step(f"kernel {v.build_name}") as step:
            b = kernel.build(v, cfg.cache_root, log_dir, progress=step.update)
            step.done("cached" if b.cached else f"built in {b.seconds:.0f}s",
                      detail=f"{b.release} {b.bzimage}")
        builds.append(b)
    return builds


def image(cfg: LabConfig, log_dir: Path, ui: Ui) -> Image:
    with ui.step("root image") as step:
        img = build_image(cfg.image_recipe, cfg.cache_root, log_dir, progress=step.update)
        step.done("cached" if img.cached else f"built in {img.seconds:.0f}s")
    return img


def accelerator(cfg: LabConfig, kernel_image: Path, log_dir: Path, ui: Ui) -> Accel:
    """The accelerator to use; an `auto` probe is remembered until the host reboots
    (whether nested KVM works does not change in between, and it costs seconds)."""
    memo = cfg.cache_root / "kvm-probe.json"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if cfg.vm.accel == "auto" and memo.is_file():
        seen = json.loads(memo.read_text())
        if seen.get("boot_id") == boot_id:
            accel = Accel(seen["name"], seen["reason"] + ", probed earlier this boot")
            ui.note(f"accelerator: {accel.name} ({accel.reason})")
            return accel
    accel = probe_accel(cfg.vm.accel, kernel_image, log_dir)
    if cfg.vm.accel == "auto":
        cache.write_json(memo, {"boot_id": boot_id, "name": accel.name, "reason": accel.reason})
    ui.note(f"accelerator: {accel.name} ({accel.reason})")
    return accel


def machine_spec(cfg: LabConfig, build: KernelBuild, img: Image, name: str = "") -> MachineSpec:
    return MachineSpec(
        name=name or build.variant,
        kernel=build.bzimage,
        rootfs=img.rootfs,
        vcpus=cfg.vm.vcpus,
        memory_mib=cfg.vm.memory_mib,
        debug_kernel=build.debug,
    )


@contextlib.contextmanager
def booted(
    cfg: LabConfig, build: KernelBuild, img: Image, accel: Accel, log_dir: Path, name: str = ""
) -> Iterator[tuple[Machine, Guest]]:
    """A running VM with an SSH session; both torn down on the way out."""
    spec = machine_spec(cfg, build, img, name)
    with Machine(spec, accel, log_dir=log_dir, boot_timeout_s=cfg.vm.boot_timeout_s) as vm, \
            Guest(vm, img) as guest:
        yield vm, guest


def series_of(cfg: LabConfig) -> Series:
    return load_series(cfg.series)
