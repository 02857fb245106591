"""kselftest targets run in each variant's guest, one check per target.

The targets were built from the variant's own source (lab.kernel.kselftest);
their install folder is copied into the guest once per boot and each target
runs through kselftest's own runner (`run_kselftest.sh -c TARGET`), with the
runner's per-test timeouts (each target's `settings`) inside the lab's
budget for the whole target. The runner prints TAP: one result per test
program, which become the check's sub-results; a kernel report during the
run fails the check like any case. Judged A/B against the base
(lab.suite.ab).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from lab.errors import GuestError
from lab.guest.workloads import REMOTE
from lab.kernel.kselftest import KselftestBuild
from lab.results import CheckKind
from lab.suite import scripts
from lab.suite.spec import Case, CaseContext, Observation
from lab.vm.ssh import Guest

REMOTE_DIR = f"{REMOTE}/kselftest"
FIRST_NUMBER = 201  # after the suite's cases and the user's scripts
# kselftest scripts call libfuse 2's `fusermount`; Debian 12's guest has
# libfuse 3's `fusermount3`, which takes the same options.
OLD_NAMES = {"fusermount": "fusermount3"}


def check_name(target: str) -> str:
    return f"kselftest:{target}"


def _installed(guest: Guest, build: KselftestBuild) -> str:
    """The build's folder in the guest, copied in if this boot has not got it."""
    remote = f"{REMOTE_DIR}/{build.key[:16]}"
    q = shlex.quote
    if guest.run(f"test -e {q(remote)}/.lab-ok", timeout=30).exit_status == 0:
        return remote
    guest.run(f"rm -rf {q(remote)} && mkdir -p {q(remote)}/.lab-bin", check=True)
    guest.put(build.tarball, f"{remote}/.lab-kselftest.tar.gz")
    shims = " && ".join(
        f"{{ command -v {old} >/dev/null || ln -s \"$(command -v {new})\" .lab-bin/{old}; }}"
        for old, new in OLD_NAMES.items())
    guest.run(f"cd {q(remote)} && tar -xzf .lab-kselftest.tar.gz && rm .lab-kselftest.tar.gz "
              f"&& {shims} && touch .lab-ok", check=True)
    return remote


def observe(ctx: CaseContext, build: KselftestBuild, target: str, timeout_s: float
            ) -> Observation:
    guest = ctx.guest
    limit = timeout_s * guest.machine.scale
    try:
        remote = _installed(guest, build)
    except GuestError as exc:
        return Observation(False, "the target's tests installed in the guest",
                           f"could not install them: {exc}", {"target": target})
    q = shlex.quote
    command = (f"cd {q(remote)} && PATH={q(remote)}/.lab-bin:$PATH "
               f"./run_kselftest.sh -c {q(target)}")
    run = scripts.run_detached(guest, f"kselftest-{target.replace('/', '-')}", command, {},
                               limit)
    return scripts.judge({"target": target, "kselftest_build": build.key[:16]}, run)


def cases(builds: Mapping[str, KselftestBuild], variant: str, timeout_s: float) -> list[Case]:
    build = builds[variant]
    return [
        Case(FIRST_NUMBER + i, check_name(t), f"kselftest {t} from the variant's own source",
             lambda ctx, t=t: observe(ctx, build, t, timeout_s),
             budget_s=timeout_s + scripts.SETUP_BUDGET_S, alone=True, kind=CheckKind.KSELFTEST)
        for i, t in enumerate(build.targets)
    ]


def items(builds: Mapping[str, KselftestBuild], variants: Sequence[str], timeout_s: float
          ) -> list[tuple[str, Case]]:
    return [(v, c) for v in variants if v in builds for c in cases(builds, v, timeout_s)]
