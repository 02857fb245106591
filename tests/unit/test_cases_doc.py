"""docs/cases.md is the catalog and the witness folders, as they are: regenerate it with
`python tests/unit/test_cases_doc.py > docs/cases.md` when a case or a witness changes."""

from pathlib import Path

from lab.config import DATA_ROOT
from lab.kernel import witnesses
from lab.suite import catalog

INPUTS = {
    "parallel-nonextending": "the server's flag set, writes inside EOF: the shared lock",
    "flag-off": "the server's FOPEN_PARALLEL_DIRECT_WRITES off",
    "cached-odirect": "the kind of open: O_DIRECT fds on a page-cache open",
    "extending": "where a write ends: beyond EOF (i_size)",
    "eof-exact": "where a write ends: exactly at EOF",
    "append": "O_APPEND on the fd (IOCB_APPEND)",
    "truncate-race": "the re-check of i_size after the shared lock is taken (plain fds, "
                     "O_DIRECT, RWF_DSYNC)",
    "integrity": "the data path under parallel writes: offsets and bytes",
    "short-write": "a short count from the server, exclusive path",
    "server-errors": "error replies from the server, exclusive path",
    "async-io": "submission: libaio and io_uring (async iocbs)",
    "mixed": "buffered and direct access to one inode: the invalidation around O_DIRECT "
             "writes of pages a buffered fd cached (server without auto_inval_data)",
    "server-death": "the server dying mid-write (connection abort)",
    "parallel-odirect": "O_DIRECT fds on a direct-io open",
    "append-stale": "O_APPEND with the fd's position inside the file",
    "shared-short-write": "a short count from the server, shared path",
    "shared-server-errors": "error replies from the server, shared path",
    "zero-length": "iov_iter_count() == 0 on both paths",
    "efbig": "RLIMIT_FSIZE (generic_write_checks) on both paths",
    "attributes": "size and mtime after parallel writes, seen by another process",
    "lock-pairing": "the unlock matching the lock taken (shared, exclusive, truncate)",
    "cached-open": "6.9+ I/O modes: a caching open makes direct writes exclusive, held and "
                   "while it waits for parallel writers to drain (plain fds, O_DIRECT, "
                   "RWF_DSYNC); writers that begin while a truncating open holds the inode "
                   "lock (writeback cache) take their I/O mode only under the lock",
    "odirect-server-errors": "error replies on extending O_DIRECT writes",
    "fsx": "all of the above at random, against a model",
    "aio-server-errors": "error replies on extending AIO writes: plain fds (the sync path), "
                         "O_DIRECT fds with the caller's append and sync flags (the async "
                         "path's truncate), O_DIRECT toggled by fcntl while the write waits "
                         "for the lock (the kiocb's flags decide)",
    "mmap": "shared and private mappings during parallel direct writes",
    "unaligned": "sizes that are not multiples of a block or a page",
    "rwf-append": "appending asked per call (RWF_APPEND)",
    "dsync": "data sync asked per call (RWF_DSYNC) and per open (O_DSYNC)",
    "caller-flags": "the caller's sync and direct flags (RWF_DSYNC, O_DSYNC, O_DIRECT) on "
                    "writes that must be exclusive: the server's flag off, appends inside "
                    "the file",
}
SERIES = ("fuse-parallel-dio", "fuse-parallel-dio-6.12")


def cell(series: str, case: str) -> str:
    names = sorted(w.name for w in witnesses.load(DATA_ROOT / "patches" / series) if w.case == case)
    return ", ".join(f"`{n}`" for n in names) or "—"


def render() -> str:
    lines = [
        "# The suite's cases, by the input of the lock decision",
        "",
        "Each case varies one input of the direct-write lock decision in fs/fuse/file.c",
        "(the server's flag, the kind of fd and open, where a write starts and ends against",
        "EOF, how it is submitted, the error and early-exit paths). A *witness* is a small",
        "patch on top of the series' newest version on which its case must fail",
        "(`patches/<series>/witnesses/`); `lab calibrate` proves every witness still fails",
        "its case and the correct kernel passes, and `make test` runs it. This table is",
        "checked against the catalog and the witness folders by tests/unit/test_cases_doc.py.",
        "",
        "| # | case | input it varies | witnesses, 6.1 | witnesses, 6.12 |",
        "|---|------|-----------------|----------------|-----------------|",
    ]
    for c in catalog.CASES:
        lines.append(f"| {c.number} | {c.name} | {INPUTS[c.name]} | {cell(SERIES[0], c.name)} "
                     f"| {cell(SERIES[1], c.name)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")


def test_the_cases_doc_is_the_catalog_and_the_witnesses_as_they_are():
    doc = Path(__file__).resolve().parents[2] / "docs" / "cases.md"
    assert doc.read_text() == render(), (
        "docs/cases.md is stale: python tests/unit/test_cases_doc.py > docs/cases.md")


def test_every_case_says_which_input_it_varies():
    assert set(INPUTS) == {c.name for c in catalog.CASES}
