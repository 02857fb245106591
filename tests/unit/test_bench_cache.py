"""The benchmark plan, server options, and the cache's locks between processes."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

from lab.bench import sweep
from lab.config import BenchConfig
from lab.guest.workloads import ServerOptions
from lab.host import cache
from lab.results import BenchSample
from lab.shard import Shard, select


def test_plan_runs_a_points_repeats_together_and_the_variants_take_turns():
    cfg = BenchConfig(workloads=("ssf",), jobs=(1, 8), modes=("latency",), repeat=2)
    points = sweep.plan(cfg, ["baseline", "patched"])
    assert len(points) == 8
    assert [(p.variant, p.numjobs, p.repeat) for p in points[:4]] == [
        ("baseline", 1, 0), ("baseline", 1, 1), ("patched", 1, 0), ("patched", 1, 1)]
    assert len({p.key for p in points}) == len(points)
    batches = sweep.batches(points)
    assert [len(b) for b in batches] == [2, 2, 2, 2]  # one fio process per point
    assert all(len({(p.variant, p.numjobs) for p in b}) == 1 for b in batches)
    assert [len(b) for b in sweep.batches(points, one_by_one=True)] == [1] * 8
    # A shard that splits a point's repeats runs what it holds of it together.
    odd = [p for i, p in enumerate(points) if i != 1]
    assert [len(b) for b in sweep.batches(odd)] == [1, 2, 2, 2]


def test_plan_shards_cover_everything_once():
    points = sweep.plan(BenchConfig(), ["baseline", "patched"])
    parts = [select(points, Shard(k, 3), key=lambda p: p.key) for k in (1, 2, 3)]
    keys = [p.key for part in parts for p in part]
    assert sorted(keys) == sorted(p.key for p in points)


def test_a_custom_job_file_is_swept_over_numjobs_and_named_by_its_stem(tmp_path):
    job = tmp_path / "mine.fio"
    job.write_text("[w]\nrw=write\nsize=1m\n")
    cfg = BenchConfig(modes=("null",), jobs=(1, 4), repeat=3, job_file=str(job))
    assert [(p.workload, p.numjobs) for p in sweep.plan(cfg, ["x"])] == (
        [("mine", 1)] * 3 + [("mine", 4)] * 3)


def test_server_options_for_each_mode():
    cfg = BenchConfig(write_delay_us=20000)
    assert sweep.server_options(cfg, "null") == ServerOptions(null_writes=True)
    latency = sweep.server_options(cfg, "latency")
    assert latency.null_writes and latency.delay_write_us == 20000
    argv = replace(latency, fail_write_every=3, fail_write_errno="ENOSPC").argv()
    assert "--null-writes" in argv and "--delay-write-us=20000" in argv
    assert "--fail-write-every=3" in argv and "--fail-write-errno=ENOSPC" in argv


def _hold_lock(lock: Path, log: Path, tag: str) -> None:
    with cache.locked(lock):
        with log.open("a") as f:
            f.write(f"{tag} in\n")
        time.sleep(0.3)
        with log.open("a") as f:
            f.write(f"{tag} out\n")


def test_locks_serialize_two_processes(tmp_path):
    lock, log = tmp_path / "l.lock", tmp_path / "log"
    procs = [multiprocessing.Process(target=_hold_lock, args=(lock, log, t)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    lines = log.read_text().splitlines()
    # One holder at a time: each "in" is followed by the same holder's "out".
    first, second = lines[0].split()[0], lines[2].split()[0]
    assert lines == [f"{first} in", f"{first} out", f"{second} in", f"{second} out"]
    assert {first, second} == {"a", "b"}


def test_every_server_option_the_lab_passes_is_one_labfs_knows():
    """ServerOptions.argv against labfs.c's own option table: a name that
    drifted would only show as labfs refusing to start in a guest."""
    import re

    source = (Path(__file__).parents[2] / "lab" / "guest" / "programs" / "labfs.c").read_text()
    known = set(re.findall(r'\{"([a-z-]+)", (?:no|required)_argument', source))
    everything = ServerOptions(direct_io=False, parallel_direct_writes=False, null_writes=True,
                               delay_write_us=1, delay_setattr_us=1, short_write=1,
                               fail_write_every=1, cached_readers=True, auto_inval_data=False,
                               writeback_cache=True, hold_trunc_open_us=1)
    passed = {a[2:].split("=")[0] for a in everything.argv()}
    assert passed <= known, passed - known
    assert "--auto-inval-data=off" in everything.argv()


def test_the_benchmarks_efficiency_is_fios_own_runtime_over_the_wall_time():
    def sample(repeat: int, runtime_ms: int) -> BenchSample:
        return BenchSample("patched", "ssf", "latency", 4, repeat, 1.0, 1.0, 4, 0, 100,
                           runtime_ms=runtime_ms)

    eff = sweep.efficiency([sample(0, 2000), sample(1, 2001), sample(2, 1999)], wall_s=8.0)
    assert (eff.runs, eff.fio_s) == (3, 6.0)
    assert eff.ratio == 0.75
    assert abs(eff.overhead_per_run_s - 2 / 3) < 1e-9
    assert "6 s of 8 s (75%), 0.67 s per run" in eff.line()
    # Results from before fio's runtime was kept load with 0 and never divide by zero.
    old = sample(0, 0).to_dict()
    del old["runtime_ms"]
    assert BenchSample.from_dict(old).runtime_ms == 0
    assert sweep.efficiency([], wall_s=0.0).ratio == 0.0
