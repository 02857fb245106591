"""The behaviours a kernel variant can claim, defined once.

A series version (series.toml), a series' baseline and a user's `--expect`
name features from this table; the suite's expectations follow them, never a
kernel version. Each meaning says what the server observes, so a case can
check it.
"""

from __future__ import annotations

FEATURES: dict[str, str] = {
    "parallel-direct-writes": (
        "Non-extending, non-O_APPEND direct writes to one file that the server opened with "
        "FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES run in parallel (shared inode lock): "
        "N writers put N WRITEs in flight at once. Extending and O_APPEND writes, writes that "
        "a racing truncate made extending, and opens without the flag stay serialized "
        "(exclusive lock: 1 WRITE in flight)."
    ),
    "iomode-exclusive-cached": (
        "FUSE inode I/O modes (Linux 6.9): while any open of the inode is in caching mode "
        "(an open the server answered without FOPEN_DIRECT_IO, or a MAP_SHARED mmap of a "
        "direct-I/O open), a shared lock is refused and direct writes are serialized (1 WRITE "
        "in flight) even on a parallel-direct-writes open; a caching open waits until the "
        "parallel direct writes in flight have finished, and direct writes that begin while "
        "it waits are serialized too (else a stream of them could keep it waiting). When the "
        "caching open is closed, direct writes run in parallel again. A direct write counts "
        "itself as uncached I/O only once it holds the inode lock, so writers that begin while "
        "a truncating caching open holds that lock (writeback cache) wait for it instead of "
        "deadlocking it. Without this feature a cached open of the same inode does not stop "
        "parallel direct writes."
    ),
    "direct-io-allow-mmap": (
        "The kernel honours the INIT flag FUSE_DIRECT_IO_ALLOW_MMAP (bit 36, Linux 6.6; first "
        "called FUSE_DIRECT_IO_RELAX): when the server sets it, a MAP_SHARED mmap of a file "
        "opened with FOPEN_DIRECT_IO succeeds. Without the feature, or when the server does "
        "not set the flag, that mmap fails with ENODEV; MAP_PRIVATE works either way."
    ),
}

KNOWN = frozenset(FEATURES)
# The names as code uses them (the table above is their one definition).
PARALLEL_DIRECT_WRITES, IOMODE_EXCLUSIVE_CACHED, DIRECT_IO_ALLOW_MMAP = FEATURES
