"""A user's own host-side tests, with the lab's pytest plugin:

    pytest --lab-variants baseline,patched examples/tests/test_fuse_example.py

Each test runs once per variant; every variant's VM boots once for the whole
session. `lab_guest` runs commands in the guest, copies files in and out, and
mounts the lab's FUSE server with the options a test needs. A kernel report
(oops, WARNING, lockdep, hung task) during a test fails that test.
"""

from __future__ import annotations

PARALLEL = "parallel-direct-writes"


def test_writers_run_in_parallel_only_where_the_kernel_claims_it(lab_guest):
    """Four non-extending direct writers, each WRITE held 300 ms by the server:
    the server sees all four at once on a kernel with the feature, one otherwise."""
    writers, block = 4, 64 * 1024
    options = lab_guest.ServerOptions(delay_write_us=300_000)
    with lab_guest.fuse_mount(options) as m:
        lab_guest.probe("pwrite", file=f"{m.path}/f", writers=writers, block=block,
                        base=0, presize=writers * block)
    want = writers if PARALLEL in lab_guest.features else 1
    assert m.file_stats("f").max_inflight == want


def test_a_file_round_trips_through_the_fuse_mount(lab_guest, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "in").write_bytes(data)
    with lab_guest.fuse_mount() as m:
        lab_guest.put(tmp_path / "in", "/tmp/in")
        lab_guest.run(f"dd if=/tmp/in of={m.path}/copy bs=64k oflag=direct status=none",
                      check=True)
        lab_guest.get(f"{m.path}/copy", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
