"""pytest plugin: your host-side tests against the lab's kernels in real VMs.

Registered through the `pytest11` entry point, so installing kernel-lab is
enough:

    def test_write_through_fuse(lab_guest):
        with lab_guest.fuse_mount() as m:
            lab_guest.run(f"echo hi > {m.path}/f", check=True)
            assert lab_guest.run(["cat", f"{m.path}/f"]).stdout == "hi\\n"

    $ pytest --lab-variants baseline,patched

A test that asks for `lab_guest` runs once per variant; each variant's VM is
booted at its first use and kept for the whole session (rebooted only if a
test crashed it). After every test the guest's console and dmesg are checked
for kernel reports (oops, WARNING, lockdep, hung task, ...): one fails that
test with the report. Kernels, the image and the accelerator come from the
lab's cache; `--lab-config` picks a lab.toml.

Fixtures: `lab_guest` (a LabGuest), `lab_variant` (its name), and the session
fixtures behind them (`lab_config`, `lab_prepared`, `lab_builds`, `lab_image`,
`lab_accel`, `lab_fleet`, `lab_build_names`, `lab_logs`) for tests that need more. lab
modules are imported inside fixtures, so the plugin costs nothing in a run
that uses none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lab.guest.workloads import FuseMount, ServerOptions
    from lab.host.proc import CommandResult
    from lab.kernel.build import KernelBuild
    from lab.vm.machine import Machine
    from lab.vm.ssh import Guest

DEFAULT_VARIANTS = "baseline,patched"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kernel-lab", "kernel-lab VMs (lab.pytest_plugin)")
    group.addoption("--lab-variants", default=DEFAULT_VARIANTS, metavar="A,B",
                    help="variants each lab_guest test runs on, comma-separated "
                         f"(default {DEFAULT_VARIANTS})")
    group.addoption("--lab-config", type=Path, default=None, metavar="FILE",
                    help="the lab.toml to use (default: the lab's own, if any)")
    group.addoption("--lab-series", type=Path, default=None, metavar="DIR",
                    help="the patch series whose variants the tests build (default: "
                         "lab.toml's), e.g. patches/fuse-parallel-dio-6.12 for Linux 6.12")


def variant_names(config: pytest.Config) -> list[str]:
    raw = str(config.getoption("--lab-variants"))
    names = list(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if not names:
        raise pytest.UsageError(f"--lab-variants: no variant names in {raw!r}")
    return names


def pytest_configure(config: pytest.Config) -> None:
    variant_names(config)  # a bad --lab-variants is a usage error before collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Session scope: pytest groups the tests by variant, and a VM serves them all.
    if "lab_variant" in metafunc.fixturenames:
        metafunc.parametrize("lab_variant", variant_names(metafunc.config), scope="session")


class LabGuest:
    """One variant's booted guest, as a test sees it.

    run/put/get are the lab's own Guest calls (timeouts in KVM-scale seconds,
    a kernel crash raised as the kernel's words); `fuse_mount()` mounts our
    FUSE server (labfs) with the given ServerOptions.
    """

    def __init__(self, variant: str, build: KernelBuild, machine: Machine, guest: Guest):
        from lab.guest import workloads

        self.variant = variant
        self.build = build
        self.machine = machine
        self.guest = guest
        self.FuseMount = workloads.FuseMount
        self.ServerOptions = workloads.ServerOptions

    @property
    def features(self) -> tuple[str, ...]:
        return self.build.features

    @property
    def release(self) -> str:
        return self.build.release

    def run(self, command: str | Sequence[str], *, timeout: float = 120.0,
            check: bool = False) -> CommandResult:
        return self.guest.run(command, timeout=timeout, check=check)

    def put(self, local: Path, remote: str, timeout: float = 120.0) -> None:
        self.guest.put(Path(local), remote, timeout)

    def get(self, remote: str, local: Path, timeout: float = 120.0) -> None:
        self.guest.get(remote, Path(local), timeout)

    def fuse_mount(self, options: ServerOptions | None = None, name: str = "test") -> FuseMount:
        """labfs on /mnt/NAME, as a context manager; counters in `.stats` afterwards."""
        return self.FuseMount(self.guest, options or self.ServerOptions(), name=name)

    def probe(self, subcommand: str, timeout: float = 120, **options: Any) -> Any:
        """Our labprobe program (see lab/guest/workloads.py), its JSON as a dict."""
        from lab.guest import workloads

        return workloads.probe(self.guest, subcommand, timeout, **options)

    def __repr__(self) -> str:
        return f"LabGuest({self.variant!r}, {self.release!r})"


# --- session fixtures -----------------------------------------------------------------


@pytest.fixture(scope="session")
def lab_config(pytestconfig: pytest.Config):
    from lab import config

    cfg = config.load(pytestconfig.getoption("--lab-config"))
    series = pytestconfig.getoption("--lab-series")
    if series is not None:
        from lab.errors import ConfigError
        from lab.kernel.series import load_series

        cfg = dataclasses.replace(cfg, series=series.expanduser().resolve())
        try:  # a wrong folder is one usage error now, not an error in every test
            load_series(cfg.series)
        except ConfigError as exc:
            raise pytest.UsageError(f"--lab-series: {exc}") from None
    return cfg


@pytest.fixture(scope="session")
def lab_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build logs, console logs and guest command logs of the session."""
    return tmp_path_factory.mktemp("lab-logs")


@pytest.fixture(scope="session")
def lab_ui():
    from lab.ui import Ui

    return Ui(quiet=True)


@pytest.fixture(scope="session")
def lab_build_names(pytestconfig: pytest.Config) -> list[str]:
    """Which variants to build: those of --lab-variants (override to add more)."""
    return variant_names(pytestconfig)


@pytest.fixture(scope="session")
def lab_prepared(lab_config, lab_build_names, lab_image, lab_logs, lab_ui):
    """The session's kernels, image and accelerator: the lab's own `prepare`."""
    from lab import pipeline
    req = pipeline.VariantRequest(tuple(lab_build_names))
    variants = pipeline.resolve_variants(lab_config, req, lab_logs)
    return pipeline.prepare_variants(lab_config, variants, lab_logs, lab_ui, lab_image)


@pytest.fixture(scope="session")
def lab_builds(lab_prepared) -> dict[str, KernelBuild]:
    return lab_prepared.builds


@pytest.fixture(scope="session")
def lab_image(lab_config, lab_logs, lab_ui):
    from lab import pipeline
    return pipeline.image(lab_config, lab_logs, lab_ui)


@pytest.fixture(scope="session")
def lab_accel(lab_prepared):
    return lab_prepared.accel


@pytest.fixture(scope="session")
def lab_fleet(lab_config, lab_prepared, lab_logs, lab_ui
              ) -> Iterator[Callable[[str], tuple[Machine, Guest]]]:
    """`get(name) -> (machine, guest)`: a booted VM with our guest programs
    (the lab's own `deployed`), started at first use and kept for the session;
    a dead one is rebooted."""
    from lab import pipeline

    stack = contextlib.ExitStack()
    vms: dict[str, tuple[Machine, Guest, contextlib.ExitStack]] = {}

    def get(name: str) -> tuple[Machine, Guest]:
        if name not in lab_prepared.builds:
            raise pytest.UsageError(f"variant {name!r} was not built this session; "
                                    f"built: {', '.join(lab_prepared.builds)}")
        if name not in vms or not vms[name][0].is_running():
            if name in vms:
                vms[name][2].close()
            inner = contextlib.ExitStack()
            vm, guest = inner.enter_context(
                pipeline.deployed(lab_config, lab_prepared, name, lab_logs, lab_ui))
            stack.push(inner)
            vms[name] = (vm, guest, inner)
        return vms[name][0], vms[name][1]

    with stack:
        yield get


# --- per test --------------------------------------------------------------------------


@pytest.fixture
def lab_guest(lab_variant: str, lab_fleet, lab_builds) -> Iterator[LabGuest]:
    """The variant's guest; the test fails on any kernel report it caused."""
    from lab.suite import checks

    vm, guest = lab_fleet(lab_variant)
    # What earlier tests (or the boot) left on the console is theirs.
    vm.new_trouble()
    guest.run("dmesg -c > /dev/null", timeout=30)
    yield LabGuest(lab_variant, lab_builds[lab_variant], vm, guest)
    if not vm.is_running():
        return  # the test already failed with the kernel's own report
    ok, trouble, excerpt = checks.health(guest, vm.new_trouble())
    if not ok:
        pytest.fail(f"{lab_variant}: {trouble}\n{excerpt}", pytrace=False)
