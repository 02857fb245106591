"""labfsx in real VMs: the suite's fsx case passes on the correct kernels and
fails on a kernel mutant that corrupts data and attributes.

The mutant (tests/data/fsx/mutant-no-size-update.patch, on top of the
series' baseline and v5) drops fuse_write_update_attr() after a direct
write: the file's size stays stale after an extending write, and the next
O_APPEND write lands over the extending write's data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import pipeline
from lab.guest import workloads
from lab.suite import fsx
from lab.suite.spec import CaseContext

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

MUTANT = Path(__file__).resolve().parent.parent / "data" / "fsx" / "mutant-no-size-update.patch"


def test_fsx_case_passes(lab_guest):
    obs = fsx.case_fsx(CaseContext(lab_guest.guest, lab_guest.features))
    assert obs.passed, f"{lab_guest.variant}: {obs.observed}\n{obs.details.get('report', '')}"
    runs = obs.details["runs"]
    assert [r["seed"] for r in runs] == list(fsx.SUITE_SEEDS)
    assert all(r["ops"] > 0 and r["epochs"] > 0 for r in runs)
    # every kind ran (mmap through MAP_PRIVATE: FUSE direct_io refuses MAP_SHARED)
    done = {k for r in runs for k, c in r["kinds"].items() if c["done"]}
    assert done == set(fsx.KINDS)
    assert sum(r["mmap_shared_refused"] for r in runs) > 0
    # the server saw the writes
    assert obs.details["server"]["writes"] > 0
    ops = sum(r["ops"] for r in runs)
    seconds = sum(r["elapsed_s"] for r in runs)
    print(f"{lab_guest.variant}: {ops} ops in {seconds:.1f}s, {ops / seconds:.0f} ops/s")


@pytest.mark.build
@pytest.mark.timeout(2400)  # another lab's build may hold the source first, for minutes
def test_fsx_case_fails_on_a_corrupting_kernel(lab_config, lab_image, lab_accel, lab_logs,
                                               lab_ui):
    series = pipeline.series_of(lab_config)
    req = pipeline.VariantRequest(("user",), patches=(series.version("v5").patch, MUTANT))
    variants = pipeline.resolve_variants(lab_config, req, lab_logs)
    build = pipeline.build_variants(lab_config, variants, lab_logs, lab_ui)[0]
    with pipeline.booted(lab_config, build, lab_image, lab_accel, lab_logs,
                         name="fsx-mutant") as (_vm, guest):
        workloads.deploy(guest, lab_config.cache_root)
        obs = fsx.case_fsx(CaseContext(guest, build.features))
    print(f"mutant: {obs.observed}")
    assert not obs.passed
    failed = obs.details["runs"][-1]
    failure = failed["failure"]
    assert failed["result"] == "fail" and failure["type"] == "mismatch"
    # a stale size, or an append over the extending write's data
    assert "size" in failure["what"] or "record" in failure["what"], failure["what"]
    assert f"--seed={failed['seed']}" in obs.observed  # the replay command
    assert "thread 0:" in obs.details["report"]
