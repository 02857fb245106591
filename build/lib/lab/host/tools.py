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
    "tune2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "genext2fs": "genext2fs",
    "newuidmap": "uidmap",
    "newgidmap": "uidmap",
    "fio": "fio",
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
    # A required check failing means the lab cannot work here (exit 3); an
    # optional one (KVM) only makes it slower.
    required: bool = True


def free_disk_gib(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**30


def free_memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def subid_range(kind: str, user: str) -> tuple[int, int] | None:
    """The user's subordinate id range in /etc/subuid or /etc/subgid (`kind`:
    uid or gid), if it is big enough for a Debian root file system (65536)."""
    try:
        lines = Path(f"/etc/sub{kind}").read_text().splitlines()
    except OSError:
        return None
    names = {user, str(os.getuid())}
    for line in lines:
        parts = line.strip().split(":")
        if (len(parts) == 3 and parts[0] in names and parts[1].isdigit()
                and parts[2].isdigit() and int(parts[2]) >= 65536):
            return int(parts[1]), int(parts[2])
    return None
