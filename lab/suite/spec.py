"""What a suite case is: its context in the guest, what it observed, and its
entry in the catalog (lab.suite.catalog holds the cases themselves)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.guest.workloads import FuseMount, ServerOptions
from lab.kernel import features
from lab.results import CheckKind, SubResult
from lab.vm.ssh import Guest

FEATURE = features.PARALLEL_DIRECT_WRITES
WRITERS = 8
BLOCK = 64 * 1024
# Long enough that all writers reach the server under TCG, far below the
# 10 s hung-task timeout of every test kernel.
HOLD_US = 400_000
# labprobe's word at offset 0 written by writer 0 (tag 1): (tag << 48) | offset.
PATTERN_TAG_1 = 1 << 48
# A case that has not finished after this long (KVM seconds, scaled for TCG
# and debug kernels) has stopped making progress: the kernel hung.
CASE_BUDGET_S = 20.0


@dataclass(frozen=True)
class Observation:
    passed: bool
    expected: str
    observed: str
    details: dict[str, Any] = field(default_factory=dict)  # evidence, shown as it is
    subtests: tuple[SubResult, ...] = ()  # the KTAP/TAP results of a test that prints them
    timed_out: bool = False


@dataclass(frozen=True)
class CaseContext:
    guest: Guest
    features: tuple[str, ...]
    # The case's mount point is /mnt/<mount_name>: unique among cases that run
    # together in one guest (lab.suite.together), so none sees another's files.
    mount_name: str = "case"

    def mount(self, options: ServerOptions) -> FuseMount:
        return FuseMount(self.guest, options, name=self.mount_name)

    @property
    def parallel(self) -> bool:
        return FEATURE in self.features

    @property
    def iomodes(self) -> bool:
        """A caching open of the inode makes direct writes exclusive (Linux 6.9+)."""
        return features.IOMODE_EXCLUSIVE_CACHED in self.features


@dataclass(frozen=True)
class Case:
    number: int
    name: str
    title: str
    run: Callable[[CaseContext], Observation]
    budget_s: float = CASE_BUDGET_S
    # Runs with no other case beside it (lab.suite.together): it loads the guest's
    # CPUs for a fixed time (fsx), or it is the user's script, whose needs we
    # do not know.
    alone: bool = False
    # The lab's own case, or the tree's / the user's test (judged A/B: lab.suite.ab).
    kind: CheckKind = CheckKind.CASE
