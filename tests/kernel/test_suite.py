"""The regression and concurrency suite on real kernels (see lab/catalog.py).

Each case is judged against what the variant claims; with the default
variants, `baseline` (no feature) and `patched` (the series' newest version)
must both pass every case. The cases run as `lab test` runs them: the
independent ones together in one guest (lab.together), a case that fails
beside others again alone. Calibration against v1..v5 is in the README.
"""

from __future__ import annotations

import pytest

from lab.results import CheckResult
from lab.suite import catalog, checks, spec, together

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

LANES = 4


@pytest.fixture(scope="session")
def _suite_by_variant() -> dict[str, dict[str, CheckResult]]:
    return {}


@pytest.fixture
def suite_results(variant, fleet, builds, _suite_by_variant) -> dict[str, CheckResult]:
    """Every case's result on one variant's VM, run once per variant in the
    session whatever order pytest puts the variants' tests in (a session
    fixture over the variant parameter is torn down and run again each time
    the parameter changes back)."""
    if variant not in _suite_by_variant:
        _suite_by_variant[variant] = _run_suite(variant, fleet, builds)
    return _suite_by_variant[variant]


def _run_suite(variant, fleet, builds) -> dict[str, CheckResult]:
    _vm, guest = fleet(variant)
    features = builds[variant].features
    batch = together.run_batch(together.grouped(catalog.CASES, LANES), guest, variant, features,
                               lanes=LANES)
    assert not batch.trouble, f"{variant}: {batch.trouble}\n{batch.evidence}"
    results = {r.name: r for r in batch.passed}
    for case in catalog.CASES:
        if case.name not in results:  # run alone, or failed beside others
            results[case.name] = checks.run_case(case, guest, variant, features).result
    return results


@pytest.mark.parametrize("case", catalog.CASES, ids=lambda c: f"{c.number:02d}-{c.name}")
def test_case(case, variant, suite_results):
    result = suite_results[case.name]
    assert result.passed, (
        f"{variant} {case.name}: expected {result.expected}; observed {result.observed}\n"
        f"{result.console_excerpt}"
    )


def test_the_suite_can_fail_a_false_claim_also_among_other_cases(fleet):
    """Calibration: the baseline, declared to have the feature, fails the
    parallel cases while they run beside others, and passes the one whose
    answer the claim does not change."""
    _vm, guest = fleet("baseline")
    names = ("parallel-nonextending", "parallel-odirect", "flag-off")
    cases = [c for c in catalog.CASES if c.name in names]
    batch = together.run_batch(cases, guest, "baseline-claiming", (spec.FEATURE,),
                               lanes=len(cases))
    assert not batch.trouble
    assert sorted(batch.failed) == ["parallel-nonextending", "parallel-odirect"]
    assert all(r.observed.startswith("1 of 8") for r in batch.failed.values())
    assert [r.name for r in batch.passed] == ["flag-off"]
    alone = checks.run_case(cases[0], guest, "baseline-claiming", (spec.FEATURE,)).result
    assert not alone.passed and alone.observed.startswith("1 of 8")
