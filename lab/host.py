"""What the host must provide, and `lab doctor`'s checks of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ToolMissing

# Debian 12 package that provides each host command the lab runs.
PACKAGE_OF = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "patch": "patch",
    "rsync": "rsync",
    "xz": "xz-utils",
    "tar": "tar",
    "perl": "perl",
    "git": "git",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh-keygen": "openssh-client",
    "dpkg-query": "dpkg",
}


def missing_tools(tools: Iterable[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def require_tools(tools: Iterable[str]) -> None:
    missing = missing_tools(tools)
    if missing:
        packages = sorted({PACKAGE_OF.get(t, t) for t in missing})
        raise ToolMissing(
            f"missing host tool(s): {', '.join(missing)}; "
            f"install with: sudo apt-get install {' '.join(packages)}"
        )


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def free_disk_gib(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**30


def free_memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0
