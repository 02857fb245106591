"""Phase times of a run: nesting, the total, and their way into results.json."""

from __future__ import annotations

import pytest

from lab.results import RunResults, merge
from lab.ui import PhaseTimer, Ui


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_charge_the_innermost_and_add_up_to_the_total():
    clock = Clock()
    timer = PhaseTimer(clock)
    clock.now += 1.0  # before any phase: other
    with timer.phase("boot"):
        clock.now += 2.0
        with timer.phase("deploy"):
            clock.now += 0.5
        clock.now += 0.25  # back in boot
    with timer.phase("cases"):
        clock.now += 10.0
    with timer.phase("boot"):  # a second boot adds to the first
        clock.now += 2.0
    d = timer.to_dict()
    assert d["phases_s"] == {"boot": 4.25, "deploy": 0.5, "cases": 10.0}
    assert d["other_s"] == 1.0 and d["total_s"] == 15.75
    assert sum(d["phases_s"].values()) + d["other_s"] == d["total_s"]


def test_phases_come_in_pipeline_order_whatever_order_they_ran_in():
    clock = Clock()
    timer = PhaseTimer(clock)
    for name in ("report", "extra", "build", "fio"):
        with timer.phase(name):
            clock.now += 1.0
    assert list(timer.to_dict()["phases_s"]) == ["build", "fio", "report", "extra"]
    assert timer.summary() == ("time: build 1.0s, fio 1.0s, report 1.0s, extra 1.0s, "
                               "other 0.0s (total 4.0s)")


def test_a_failing_phase_is_still_charged():
    clock = Clock()
    timer = PhaseTimer(clock)
    with pytest.raises(RuntimeError), timer.phase("boot"):
        clock.now += 3.0
        raise RuntimeError("the kernel did not boot")
    assert timer.to_dict()["phases_s"] == {"boot": 3.0}


def test_a_step_with_a_phase_is_timed_in_it():
    ui = Ui(quiet=True)
    with ui.step("kernel baseline", phase="build") as step:
        step.done("cached")
    assert list(ui.phases.to_dict()["phases_s"]) == ["build"]


def test_timings_round_trip_through_results_json_and_merge_per_shard(tmp_path):
    timings = {"phases_s": {"boot": 4.1, "cases": 50.0}, "other_s": 0.3, "total_s": 54.4,
               "boots": [{"variant": "baseline", "machine_type": "pc", "total_s": 3.9}]}
    one = RunResults(run_id="a", created="2026-12-02T20:00:00+00:00", timings=timings)
    back = RunResults.load(one.save(tmp_path / "results.json"))
    assert back.timings == timings
    assert RunResults.from_dict({"run_id": "x", "created": "c"}).timings == {}  # older files
    two = RunResults(run_id="b", created="2026-12-02T20:01:00+00:00",
                     timings={"phases_s": {"fio": 1.0}})
    assert merge([one]).timings == timings
    assert merge([one, two]).timings == {"shards": {"a": timings, "b": two.timings}}
