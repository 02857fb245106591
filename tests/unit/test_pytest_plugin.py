"""The pytest plugin's wiring, without VMs: registration, options, parametrization."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
def test_per_variant(lab_variant):
    assert lab_variant in ("baseline", "v3", "patched")

def test_plain():
    pass
"""


def test_registered_as_a_pytest11_entry_point():
    eps = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert eps.get("lab") == "lab.pytest_plugin"


def test_each_variant_is_a_parameter(pytester: pytest.Pytester):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-v", "--lab-variants", "baseline,v3")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_per_variant?baseline? PASSED*",
                                 "*test_per_variant?v3? PASSED*", "*test_plain PASSED*"])


def test_default_variants_are_baseline_and_patched(pytester: pytest.Pytester):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_per_variant?baseline?", "*test_per_variant?patched?"])


def test_empty_variant_list_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("--lab-variants", " , ")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--lab-variants: no variant names*"])


def test_the_plugin_can_be_switched_off(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(lab_guest): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:lab")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'lab_guest' not found*"])
