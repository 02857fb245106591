"""`lab doctor`: what this host has, what it lacks, and how to fix it."""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from lab.config import LabConfig
from lab.errors import ConfigError, LabError, SourceMissing
from lab.host import tools
from lab.host.tools import Check
from lab.kernel import build, sources
from lab.kernel.series import load_series
from lab.vm import image, machine
from lab.vm.qemu_argv import QEMU

MIN_DISK_GIB = 10.0
MIN_MEMORY_GIB = 3.0


def run_checks(cfg: LabConfig) -> list[Check]:
    checks = []
    image_tools = image.ROOTLESS_TOOLS if image.rootless() else image.IMAGE_TOOLS
    for tool in sorted(set(build.BUILD_TOOLS) | set(image_tools)
                       | {QEMU, "qemu-img"}):
        path = shutil.which(tool)
        checks.append(Check(f"tool {tool}", path is not None, path or "not found",
                            f"sudo apt-get install {tools.PACKAGE_OF.get(tool, tool)}"))
    checks.append(_source_check(cfg.series))
    try:
        apt = ", ".join(str(p) for p in image.host_apt_sources())
        checks.append(Check("apt sources for the image", True, apt))
    except LabError as exc:
        checks.append(Check("apt sources for the image", False, str(exc),
                            "add a Debian bookworm entry to /etc/apt/sources.list.d/"))
    if image.rootless():
        user = getpass.getuser()
        for kind in ("uid", "gid"):
            found = tools.subid_range(kind, user)
            checks.append(Check(
                f"/etc/sub{kind} range for {user}", found is not None,
                f"{found[1]} ids from {found[0]}" if found else "none (mmdebstrap --mode=unshare "
                "needs one to build the image without root)",
                f"sudo usermod --add-sub{kind}s 100000-165535 {user}"))
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    checks.append(Check("kvm /dev/kvm", kvm, "accessible" if kvm else "missing or no access",
                        "add yourself to the kvm group, or run with --accel tcg (slower)",
                        required=False))
    checks.append(_kvm_probe(cfg))
    disk = tools.free_disk_gib(cfg.cache_root)
    checks.append(Check("disk", disk >= MIN_DISK_GIB, f"{disk:.0f} GiB free in {cfg.cache_root}",
                        f"free at least {MIN_DISK_GIB:.0f} GiB or set LAB_CACHE elsewhere"))
    mem = tools.free_memory_gib()
    checks.append(Check("memory", mem >= MIN_MEMORY_GIB, f"{mem:.1f} GiB available",
                        "two VMs of 1 GiB each plus a kernel build need about 3 GiB"))
    return checks


def _source_check(series_folder: Path) -> Check:
    """The configured series' kernel source is on this machine."""
    try:
        spec = load_series(series_folder).source
        sources.check_available(spec)
    except SourceMissing as exc:
        return Check("kernel source", False, str(exc), exc.fix)
    except ConfigError as exc:
        return Check("kernel source", False, str(exc))
    return Check("kernel source", True, f"{spec.describe()} (series {series_folder.name})")


def _kvm_probe(cfg: LabConfig) -> Check:
    """Whether a guest really runs under KVM here (nested KVM can hang)."""
    kernels = sorted(cfg.cache_root.glob("kernels/*/bzImage"))
    if not kernels:
        return Check("kvm usable", True, "not probed yet: no kernel built (lab build)",
                     required=False)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Check("kvm usable", False, "no /dev/kvm access: guests run under TCG",
                     "add yourself to the kvm group", required=False)
    accel = machine.probe_accel("auto", kernels[0], cfg.cache_root / "logs")
    return Check("kvm usable", accel.name == "kvm", accel.reason,
                 "guests will run under TCG (about 4x slower timeouts apply)", required=False)
