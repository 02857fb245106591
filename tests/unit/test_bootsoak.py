"""The boot soak's bookkeeping: a failure counts by what broke, and the
summary of good boots (the soak itself boots real VMs: lab bootsoak)."""
from lab.errors import BootError, GuestError, KernelCrash, LabError, QemuCrashed, QmpFailed
from lab.jobs.bootsoak import VariantSoak, failure_kind, table


def test_each_failure_is_counted_by_what_broke():
    assert failure_kind(QmpFailed("handshake")) == "qmp"
    assert failure_kind(QemuCrashed("SIGSEGV")) == "qemu-crash"
    assert failure_kind(KernelCrash("oops")) == "console"
    assert failure_kind(BootError("no ready marker")) == "console"
    assert failure_kind(GuestError("ssh reset")) == "ssh"
    assert failure_kind(LabError("disk full")) == "other"


def test_the_summary_shows_failures_and_the_spread_of_good_boots():
    soak = VariantSoak("baseline", 4, (2.0, 2.5, 3.0), {"qmp": 1, "ssh": 0})
    assert soak.failed == 1
    (row,) = table([soak]).rows
    assert row == ("baseline", "4", "1", "qmp 1", "2.50", "3.00", "3.00")
