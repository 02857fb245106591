"""One classification of failures and one flake policy for every command."""

from __future__ import annotations

import pytest

from lab import verdict
from lab.errors import (
    BootError,
    BuildError,
    ConfigError,
    GuestError,
    GuestProgramFailed,
    KconfigUnmet,
    KernelCrash,
    KernelHang,
    LabError,
    PatchError,
    SourceMissing,
    ToolMissing,
)
from lab.verdict import FlakePolicy, Outcome, RunsVerdict


@pytest.mark.parametrize("exc, outcome, code, bisect", [
    (KernelCrash("oops"), Outcome.KERNEL_FAILED, 1, 1),
    (KernelHang("stuck"), Outcome.KERNEL_FAILED, 1, 1),
    (GuestProgramFailed("ftruncate: EIO"), Outcome.KERNEL_FAILED, 1, 1),
    (PatchError("hunk 2 of x.patch"), Outcome.UNTESTABLE, 2, 125),
    (KconfigUnmet("CONFIG_FUSE_FS did not stick"), Outcome.UNTESTABLE, 2, 125),
    (ConfigError("bad key"), Outcome.BAD_INPUT, 2, 128),
    (SourceMissing("no linux-source-6.1", fix="apt-get"), Outcome.BAD_INPUT, 2, 128),
    (BuildError("cc1 failed"), Outcome.UNTESTABLE, 3, 125),
    (BootError("no ready marker"), Outcome.UNTESTABLE, 3, 125),
    (GuestError("ssh reset"), Outcome.LAB_BROKE, 3, 128),
    (ToolMissing("qemu-img"), Outcome.LAB_BROKE, 3, 128),
    (LabError("disk full"), Outcome.LAB_BROKE, 3, 128),
])
def test_every_failure_has_one_meaning(exc, outcome, code, bisect):
    assert verdict.classify(exc) is outcome
    assert verdict.exit_code(exc) == code
    assert verdict.bisect_code(exc) == bisect


@pytest.mark.parametrize("passes, expect", [
    ([True], RunsVerdict.PASS),
    ([False], RunsVerdict.FAIL),
    ([True, True, True], RunsVerdict.PASS),
    ([True, True, False], RunsVerdict.FLAKY),
    ([True, False, False], RunsVerdict.FAIL),
    ([False, True], RunsVerdict.FAIL),
])
def test_flake_policy(passes, expect):
    assert FlakePolicy().judge(passes) is expect


def test_flake_policy_threshold_is_explicit():
    assert FlakePolicy(1.0).judge([True, False]) is RunsVerdict.FLAKY
    with pytest.raises(ValueError):
        FlakePolicy(0.0)
    with pytest.raises(ValueError):
        FlakePolicy().judge([])


@pytest.mark.parametrize("verdicts, code", [
    ([RunsVerdict.PASS, RunsVerdict.PASS], 0),
    ([RunsVerdict.PASS, RunsVerdict.FAIL], 1),
    ([RunsVerdict.FLAKY, RunsVerdict.PASS], 125),
    ([RunsVerdict.FLAKY, RunsVerdict.FAIL], 1),
])
def test_a_commit_s_bisect_code_from_its_checks(verdicts, code):
    assert verdict.bisect_verdict(verdicts) == code
