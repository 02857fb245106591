"""The regression and concurrency suite on real kernels (see lab/suite.py).

Each case is judged against what the variant claims; with the default
variants, `baseline` (no feature) and `patched` (the series' newest version)
must both pass every case. Calibration against v1..v5 is in the README.
"""

from __future__ import annotations

import pytest

from lab import checks, suite

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]


@pytest.mark.parametrize("case", suite.CASES, ids=lambda c: f"{c.number:02d}-{c.name}")
def test_case(case, variant, fleet, builds):
    vm, guest = fleet(variant)
    result = checks.run_case(case, guest, variant, builds[variant].features).result
    assert result.passed, (
        f"{variant} {case.name}: expected {result.expected}; observed {result.observed}\n"
        f"{result.console_excerpt}"
    )


def test_the_suite_can_fail_a_false_claim(fleet):
    """Calibration: the baseline, declared to have the feature, fails case 1."""
    _vm, guest = fleet("baseline")
    case = next(c for c in suite.CASES if c.name == "parallel-nonextending")
    result = checks.run_case(case, guest, "baseline-claiming", (suite.FEATURE,)).result
    assert not result.passed
    assert result.observed.startswith("1 of 8")
