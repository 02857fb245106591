"""What a kernel source implies, whatever the patch under test does.

Some features come with the kernel generation, not with the patch: FUSE's
inode I/O modes (6.9) and FUSE_DIRECT_IO_ALLOW_MMAP (6.6). They are read from
what the source defines, the same way for a series' source, a user's tree and
each side of an A/B; never from a version number. The claim under test
(parallel direct writes) is the user's to make (`--expect`); it is detected
here too, but only used for the side of an A/B that is not under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.kernel import gittree
from lab.kernel.features import (
    DIRECT_IO_ALLOW_MMAP,
    IOMODE_EXCLUSIVE_CACHED,
    PARALLEL_DIRECT_WRITES,
)
from lab.kernel.sources import KernelSource

# Features a kernel has regardless of the patch: a side claims them when its
# source defines them.
REGARDLESS = (IOMODE_EXCLUSIVE_CACHED, DIRECT_IO_ALLOW_MMAP)


@dataclass(frozen=True)
class Evidence:
    feature: str
    path: str  # the file that shows it
    what: str  # what in it


# (feature, path, a fixed string whose presence shows it, what it means)
_SIGNS = (
    (IOMODE_EXCLUSIVE_CACHED, "fs/fuse/iomode.c", "FUSE_I_CACHE_IO_MODE",
     "inode I/O modes (FUSE_I_CACHE_IO_MODE)"),
    (DIRECT_IO_ALLOW_MMAP, "fs/fuse/inode.c", "FUSE_DIRECT_IO_ALLOW_MMAP",
     "the INIT flag FUSE_DIRECT_IO_ALLOW_MMAP is honoured"),
    (DIRECT_IO_ALLOW_MMAP, "fs/fuse/inode.c", "FUSE_DIRECT_IO_RELAX",
     "the INIT flag FUSE_DIRECT_IO_RELAX (ALLOW_MMAP's first name) is honoured"),
    (PARALLEL_DIRECT_WRITES, "fs/fuse/file.c", "FOPEN_PARALLEL_DIRECT_WRITES",
     "the write path reads FOPEN_PARALLEL_DIRECT_WRITES"),
)


def _shows(has: Callable[[str, str], bool]) -> dict[str, Evidence]:
    found: dict[str, Evidence] = {}
    for feature, path, sign, what in _SIGNS:
        if feature not in found and has(path, sign):
            found[feature] = Evidence(feature, path, what)
    return found


def detect(source: KernelSource) -> dict[str, Evidence]:
    """Each feature the source's commit shows, with where it shows it."""
    def has(path: str, sign: str) -> bool:
        return gittree.git(source.path, "grep", "-q", "-F", sign, source.commit, "--", path,
                           check=False).exit_status == 0
    return _shows(has)


def detect_in_folder(tree: Path) -> dict[str, Evidence]:
    """The same, read from a folder's files as they are (lab features)."""
    def has(path: str, sign: str) -> bool:
        f = tree / path
        return f.is_file() and sign in f.read_text(errors="replace")
    return _shows(has)


def regardless(source: KernelSource) -> tuple[str, ...]:
    """The features the source implies whatever the patch under test does."""
    found = detect(source)
    return tuple(f for f in REGARDLESS if f in found)
