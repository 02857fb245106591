"""kernel-lab as an installed tool: `pip install .` (not editable) into a fresh
venv outside the checkout, then run from another folder. The series, config
fragments, image recipe and guest programs come from the package's data;
results land under the working directory; a real case boots a real kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]


def test_a_non_editable_install_runs_a_real_case_from_another_folder(tmp_path, no_qemu_leak):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
                         capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import lab.config as c; print(c.DATA_ROOT)"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    data_root = Path(site.stdout.strip())
    assert data_root.is_relative_to(venv) and (data_root / "patches").is_dir(), site

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}

    def lab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "lab"), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1500)

    doctor = lab("doctor")
    said = doctor.stdout + doctor.stderr
    assert "ok   kernel source" in said and "ok   tool qemu-img" in said, said
    key = lab("build", "--print-cache-key")
    assert key.returncode == 0 and "input-kernel-source=debian-" in key.stdout, key.stderr
    test = lab("test", "--variant", "baseline", "-k", "flag-off")
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    (run,) = (work / "results").iterdir()
    checks = json.loads((run / "results.json").read_text())["checks"]
    assert [(c["name"], c["variant"], c["passed"]) for c in checks] == [
        ("flag-off", "baseline", True)]
    assert not (REPO / "results" / run.name).exists()
