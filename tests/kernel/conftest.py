"""Fixtures that build real kernels and boot them in real QEMU VMs.

Builds and the image come from the lab's cache (the first run of the session
pays for them). VMs are booted once per session per variant, side by side,
and torn down at the end, whatever happened in between. Which variants the
suite judges: `--lab-variants` (default baseline,patched), e.g.
`pytest tests/kernel --lab-variants baseline,v1,v2,v3,v4,v5,patched` for the
full calibration matrix.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from lab import config, pipeline, workloads
from lab.ui import Ui


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab-variants", default="baseline,patched",
                     help="variants the kernel suite runs on (comma-separated)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        names = metafunc.config.getoption("--lab-variants").split(",")
        metafunc.parametrize("variant", names, scope="session")


@pytest.fixture(scope="session")
def lab_cfg() -> config.LabConfig:
    return config.load(None)


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-logs")


@pytest.fixture(scope="session")
def ui() -> Ui:
    return Ui(quiet=True)


@pytest.fixture(scope="session")
def builds(request: pytest.FixtureRequest, lab_cfg, logs, ui):
    names = request.config.getoption("--lab-variants").split(",")
    names = list(dict.fromkeys(["baseline", "patched", *names]))
    variants = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(tuple(names)), logs)
    return {b.variant: b for b in pipeline.build_variants(lab_cfg, variants, logs, ui)}


@pytest.fixture(scope="session")
def image(lab_cfg, logs, ui):
    return pipeline.image(lab_cfg, logs, ui)


@pytest.fixture(scope="session")
def accel(lab_cfg, builds, logs, ui):
    return pipeline.accelerator(lab_cfg, builds["baseline"].bzimage, logs, ui)


@pytest.fixture(scope="session")
def fleet(lab_cfg, builds, image, accel, logs):
    """Booted VMs by variant name, started lazily and kept for the session."""
    stack = contextlib.ExitStack()
    vms: dict = {}

    def get(name: str):
        if name not in vms or not vms[name][0].is_running():
            if name in vms:
                vms[name][2].close()
            inner = contextlib.ExitStack()
            vm, guest = inner.enter_context(
                pipeline.booted(lab_cfg, builds[name], image, accel, logs))
            workloads.deploy(guest, lab_cfg.cache_root)
            stack.push(inner)
            vms[name] = (vm, guest, inner)
        return vms[name][0], vms[name][1]

    with stack:
        yield get


@pytest.fixture
def no_qemu_leak():
    """Fails a test that leaves a QEMU process of ours behind."""
    before = _qemu_pids()
    yield
    leaked = _qemu_pids() - before
    assert not leaked, f"QEMU processes left running: {sorted(leaked)}"


def _qemu_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 -name"], capture_output=True,
                         text=True, check=False).stdout
    return {int(p) for p in out.split()}
