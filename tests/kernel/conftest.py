"""The lab's own kernel tests use the lab's pytest plugin (lab/pytest_plugin.py).

Builds and the image come from the lab's cache (the first run of the session
pays for them). VMs are booted once per session per variant and torn down at
the end, whatever happened in between. Which variants the suite judges:
`--lab-variants` (default baseline,patched), e.g.
`pytest tests/kernel --lab-variants baseline,v1,v2,v3,v4,v5,patched` for the
full calibration matrix. baseline and patched are always built: several
tests compare the two whatever the suite runs on.

The short names below (`variant`, `fleet`, `builds`, ...) are the plugin's
`lab_*` fixtures under the names these tests have always used.
"""

from __future__ import annotations

import subprocess

import pytest

from lab.pytest_plugin import variant_names


@pytest.fixture(scope="session")
def lab_build_names(pytestconfig: pytest.Config) -> list[str]:
    return list(dict.fromkeys(["baseline", "patched", *variant_names(pytestconfig)]))


@pytest.fixture(scope="session")
def variant(lab_variant):
    return lab_variant


@pytest.fixture(scope="session")
def lab_cfg(lab_config):
    return lab_config


@pytest.fixture(scope="session")
def logs(lab_logs):
    return lab_logs


@pytest.fixture(scope="session")
def ui(lab_ui):
    return lab_ui


@pytest.fixture(scope="session")
def builds(lab_builds):
    return lab_builds


@pytest.fixture(scope="session")
def image(lab_image):
    return lab_image


@pytest.fixture(scope="session")
def accel(lab_accel):
    return lab_accel  # probed with the first build: the baseline's kernel


@pytest.fixture(scope="session")
def fleet(lab_fleet):
    """Booted VMs by variant name, started lazily and kept for the session."""
    return lab_fleet


@pytest.fixture
def no_qemu_leak(tmp_path_factory: pytest.TempPathFactory):
    """Fails a test that leaves a QEMU process of ours behind. Ours: its
    command line names a path under this session's pytest folder (the tests
    put their results there, and QEMU's console log with them), so VMs that
    other labs run on the same host do not count."""
    ours = str(tmp_path_factory.getbasetemp())
    before = _qemu_pids(ours)
    yield
    leaked = _qemu_pids(ours) - before
    assert not leaked, f"QEMU processes left running: {sorted(leaked)}"


def _qemu_pids(under: str) -> set[int]:
    out = subprocess.run(["pgrep", "-a", "-f", "qemu-system-x86_64 -name"],
                         capture_output=True, text=True, check=False).stdout
    return {int(line.split()[0]) for line in out.splitlines() if under in line}
