"""labfs itself, in a real guest: flags, counters, delays, faults, bad usage."""

from __future__ import annotations

import pytest

from lab.guest.workloads import REMOTE, FuseMount, ServerOptions, probe

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]


def test_bad_usage_exits_2_with_a_message(fleet):
    _vm, guest = fleet("patched")
    bad_option = guest.run([f"{REMOTE}/bin/labfs", "--stats=/run/x.json", "--no-such", "/", "/mnt"])
    assert bad_option.exit_status == 2 and "labfs:" in bad_option.stdout + bad_option.stderr
    missing = guest.run([f"{REMOTE}/bin/labfs", "--stats=/run/x.json", "/nonexistent", "/mnt"])
    assert missing.exit_status == 2 and "/nonexistent" in missing.stdout + missing.stderr
    bad_value = guest.run([f"{REMOTE}/bin/labfs", "--stats=/run/x.json", "--direct-io=maybe",
                           "/tmp", "/mnt"])
    assert bad_value.exit_status == 2


def test_counters_and_snapshot(fleet):
    """Writes and bytes are counted exactly; SIGUSR1 gives counters while mounted."""
    _vm, guest = fleet("patched")
    with FuseMount(guest, ServerOptions(), name="srv") as m:
        probe(guest, "pwrite", file=f"{m.path}/c", writers=4, block=65536, base=0)
        live = m.snapshot()
        assert live.file("c").writes == 4
    final = m.file_stats("c")
    assert final.writes == 4 and final.bytes == 4 * 65536
    assert final.extending_writes >= 1  # the file started empty
    assert m.stats is not None and m.stats.writes == 4  # the totals agree


def test_null_writes_discard_data_but_track_size(fleet):
    _vm, guest = fleet("patched")
    with FuseMount(guest, ServerOptions(null_writes=True), name="srv") as m:
        result = probe(guest, "pwrite", file=f"{m.path}/n", writers=2, block=65536, base=0)
        assert all(w["ret"] == 65536 for w in result["writers"])
        backing = guest.run(["stat", "-c", "%s", f"{m.backing}/n"], check=True).stdout
    assert int(backing) == 0
    assert m.file_stats("n").bytes == 2 * 65536


def test_write_delay_is_applied(fleet):
    """A held WRITE shows up in the writer's own timing (not a wall-clock limit
    on the lab: the probe's clock inside the guest measures the server)."""
    _vm, guest = fleet("patched")
    with FuseMount(guest, ServerOptions(delay_write_us=300_000), name="srv") as m:
        result = probe(guest, "pwrite", file=f"{m.path}/d", writers=1, block=4096, base=0)
    w = result["writers"][0]
    assert w["end_ms"] - w["start_ms"] >= 300
