"""lab.together's scheduling and judging, with a stand-in guest (pure logic:
the real guest's side is tests/kernel/test_together_real.py)."""

from __future__ import annotations

import contextlib
import threading

import pytest

from lab.errors import GuestError, KernelHang
from lab.host.proc import CommandResult
from lab.results import CheckResult, KernelEvidence
from lab.suite import together
from lab.suite.spec import Case, CaseContext, Observation


class FakeMachine:
    scale = 1.0

    def __init__(self, trouble: list | None = None) -> None:
        self.trouble = trouble or []

    def new_trouble(self) -> list:
        found, self.trouble = self.trouble, []
        return found


class FakeGuest:
    def __init__(self, machine: FakeMachine | None = None, dmesg: str = "") -> None:
        self.machine = machine or FakeMachine()
        self.dmesg = dmesg
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.tag = ""
        self._lock = threading.Lock()

    def sibling(self, tag: str) -> FakeGuest:
        with self._lock:
            self.opened.append(tag)
        lane = FakeGuest(self.machine)
        lane.tag = tag
        lane.closed = self.closed
        return lane

    def close(self) -> None:
        self.closed.append(self.tag)

    @contextlib.contextmanager
    def watch_case(self, budget_s: float):
        yield

    def run(self, command: str, timeout: float = 0) -> CommandResult:
        assert command == "dmesg -c"
        return CommandResult(command, 0, self.dmesg, "", 0.0)


def case(number: int, run, *, alone: bool = False) -> Case:
    return Case(number, f"c{number}", f"case {number}", run, alone=alone)


def passing(ctx: CaseContext) -> Observation:
    return Observation(True, "x", f"ran on /mnt/{ctx.mount_name}")


def failing(ctx: CaseContext) -> Observation:
    return Observation(False, "1 in flight", "8 in flight")


def test_grouped_keeps_alone_cases_out_and_needs_two_lanes_and_two_cases():
    cases = [case(1, passing), case(2, passing), case(3, passing, alone=True)]
    assert [c.name for c in together.grouped(cases, 4)] == ["c1", "c2"]
    assert together.grouped(cases, 1) == []
    assert together.grouped(cases[:1] + cases[2:], 4) == []
    assert together.grouped([*cases, cases[0]], 4) == []  # c1 asked for twice


def test_cases_really_run_at_the_same_time_each_on_its_own_mount_and_connection():
    met = threading.Barrier(3, timeout=5)  # broken (an error) unless all three wait at once

    def meets(ctx: CaseContext) -> Observation:
        met.wait()
        return passing(ctx)

    guest = FakeGuest()
    cases = [case(n, meets) for n in (1, 2, 3)]
    batch = together.run_batch(cases, guest, "patched", (), lanes=3)
    assert [r.name for r in batch.passed] == ["c1", "c2", "c3"]
    assert [r.observed for r in batch.passed] == [f"ran on /mnt/c{n}" for n in (1, 2, 3)]
    assert sorted(guest.opened) == ["c1", "c2", "c3"] and sorted(guest.closed) == sorted(
        guest.opened)
    assert not batch.failed and not batch.trouble


def test_a_failed_case_is_handed_back_to_run_alone():
    batch = together.run_batch([case(1, passing), case(2, failing)], FakeGuest(), "v1", (),
                               lanes=2)
    assert [r.name for r in batch.passed] == ["c1"]
    assert list(batch.failed) == ["c2"] and batch.failed["c2"].observed == "8 in flight"


def test_a_kernel_failure_in_one_lane_voids_the_whole_batch_and_stops_new_cases():
    started: list[str] = []

    def hangs(ctx: CaseContext) -> Observation:
        raise KernelHang("guest: the case used up its budget", excerpt="INFO: task blocked")

    def later(ctx: CaseContext) -> Observation:
        started.append(ctx.mount_name)
        return passing(ctx)

    cases = [case(1, hangs), *(case(n, later) for n in range(2, 6))]
    batch = together.run_batch(cases, FakeGuest(), "v1", (), lanes=1)
    assert batch.trouble.startswith("kernel hang while c1 ran beside 4 other cases")
    assert batch.evidence == "INFO: task blocked"
    assert not batch.passed and not batch.failed
    assert started == []  # one lane: nothing started after the hang


def test_a_kernel_report_after_the_batch_voids_it():
    guest = FakeGuest(dmesg="[   12.0] WARNING: CPU: 0 PID: 1 at fs/fuse/file.c:1 x+0x1/0x2\n")
    batch = together.run_batch([case(1, passing), case(2, passing)], guest, "v1", (), lanes=2)
    assert "WARNING" in batch.trouble and "2 cases ran together" in batch.trouble
    assert not batch.passed


def test_a_lab_error_in_a_lane_is_the_lab_breaking():
    def breaks(ctx: CaseContext) -> Observation:
        raise GuestError("labfs did not mount")

    with pytest.raises(GuestError, match="labfs did not mount"):
        together.run_batch([case(1, breaks), case(2, passing)], FakeGuest(), "v1", (), lanes=2)


def test_a_batch_failure_no_case_reproduces_alone_becomes_its_own_failed_check():
    batch = together.Batch([], {}, "kernel crash while c3 ran beside 2 other cases", "Oops")
    ok = CheckResult(name="c3", variant="v1", passed=True, expected="x", observed="x")
    extra = together.unexplained(batch, "v1", [ok])
    assert extra is not None and not extra.passed and extra.name == together.CHECK_NAME
    assert extra.kernel is not None and extra.kernel.evidence == "Oops"
    crashed = CheckResult(name="c3", variant="v1", passed=False, expected="x", observed="y",
                          kernel=KernelEvidence("crash", "Oops"))
    assert together.unexplained(batch, "v1", [ok, crashed]) is None
    assert together.unexplained(together.Batch([], {}), "v1", [ok]) is None
