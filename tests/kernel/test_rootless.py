"""The lab as an ordinary user: the image built without root (mmdebstrap's
unshare mode), then the cached kernel booted, reached over SSH and powered
off, every process running under that user's uid.

Run as root (CI here), the tests use a dedicated account, `kernel-lab-smoke`
(created once with `useradd`, with its own subordinate id range, and kept, so
its image cache under /var/tmp survives between runs like the lab's own);
run as an ordinary user, they use that user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lab.host import tools

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
SMOKE_USER = "kernel-lab-smoke"
SMOKE_HOME = Path("/var/tmp/kernel-lab-smoke")


def _free_subid_start() -> int:
    ends = [100000]
    for kind in ("uid", "gid"):
        try:
            lines = Path(f"/etc/sub{kind}").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ends.append(int(parts[1]) + int(parts[2]))
    return max(ends)


def _ensure_smoke_user() -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(SMOKE_USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(SMOKE_HOME),
                        "--shell", "/usr/sbin/nologin", SMOKE_USER], check=True, timeout=60)
        entry = pwd.getpwnam(SMOKE_USER)
    if tools.subid_range("uid", SMOKE_USER) is None or tools.subid_range("gid", SMOKE_USER) is None:
        start = _free_subid_start()
        span = f"{start}-{start + 65535}"
        subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, SMOKE_USER],
                       check=True, timeout=60)
    return entry


@pytest.fixture(scope="module")
def as_user():
    """(argv prefix to run as the ordinary user, that user's passwd entry, environment)."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        prefix: list[str] = []
    else:
        if not (shutil.which("useradd") and shutil.which("runuser")):
            pytest.skip("running as root without useradd/runuser: no ordinary user to run as")
        entry = _ensure_smoke_user()
        prefix = ["runuser", "-u", SMOKE_USER, "--"]
    SMOKE_HOME.mkdir(mode=0o755, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(SMOKE_HOME, entry.pw_uid, entry.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(SMOKE_HOME),
           "LAB_CACHE": str(SMOKE_HOME / "cache"), "LANG": "C.UTF-8"}
    python = _python_for(prefix, env)
    return prefix, entry, env, python


def _python_for(prefix: list[str], env: dict[str, str]) -> list[str]:
    """A Python the user can run that imports the lab: the test's own if the user
    can read it, else the system's 3.x with the same site-packages (the venv may
    live in root's home)."""
    probe = "import lab.cli, pydantic, fabric, qemu.qmp"
    candidates = [([sys.executable], {})]
    site = sysconfig.get_paths()["purelib"]
    system = shutil.which("python3", path="/usr/bin")
    if system:
        candidates.append(([system], {"PYTHONPATH": f"{REPO}:{site}"}))
    for argv, extra in candidates:
        out = subprocess.run([*prefix, "env", *(f"{k}={v}" for k, v in {**env, **extra}.items()),
                              *argv, "-c", probe], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        if out.returncode == 0:
            return ["env", *(f"{k}={v}" for k, v in {**env, **extra}.items()), *argv]
    pytest.skip(f"no Python the ordinary user can run imports the lab ({out.stderr[-300:]})")


def test_image_builds_without_root(as_user):
    prefix, entry, _env, python = as_user
    out = subprocess.run([*prefix, *python, "-m", "lab.cli", "image", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=1700)
    assert out.returncode == 0, out.stdout + out.stderr
    img = json.loads(out.stdout)
    how = "cached" if img["cached"] else f"built in {img['seconds']}s"
    print(f"\nrootless image as uid {entry.pw_uid}: {how}")
    rootfs, key = Path(img["rootfs"]), Path(img["ssh_key"])
    assert rootfs.is_relative_to(SMOKE_HOME / "cache")
    assert json.loads((rootfs.parent / "meta.json").read_text())["route"] == "rootless"
    for path, mode in ((rootfs, 0o400), (key, 0o600)):
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (entry.pw_uid, mode)


BOOT = """
import os, sys
from pathlib import Path
from lab.vm.ssh import Guest
from lab.vm.image import build_image
from lab.vm.machine import Machine
from lab.vm.qemu_argv import Accel, MachineSpec

work, kernel = Path(sys.argv[1]), Path(sys.argv[2])
img = build_image(Path("images").resolve(), work / "cache", work / "logs")
spec = MachineSpec(name="rootless", kernel=kernel, rootfs=img.rootfs)
with Machine(spec, Accel("tcg", "smoke test"), log_dir=work / "logs") as vm, \\
        Guest(vm, img) as guest:
    print("release", guest.run(["uname", "-r"], check=True).stdout.strip())
    print("qemu-uid", os.stat(f"/proc/{vm.pid}").st_uid, "my-uid", os.getuid())
    print("private", vm._dir)
    vm.shutdown(poweroff=guest.poweroff)
print("ended-by", vm.ended_by)
"""


def test_cached_kernel_boots_as_an_ordinary_user(as_user, builds):
    prefix, entry, _env, python = as_user
    kernel = SMOKE_HOME / "bzImage"
    shutil.copy(builds["baseline"].bzimage, kernel)
    kernel.chmod(0o644)
    out = subprocess.run([*prefix, *python, "-c", BOOT, str(SMOKE_HOME), str(kernel)],
                         cwd=REPO, capture_output=True, text=True, timeout=1700)
    assert out.returncode == 0, out.stdout + out.stderr
    said = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert said["release"] == builds["baseline"].release
    assert said["qemu-uid"] == f"{entry.pw_uid} my-uid {entry.pw_uid}"
    assert entry.pw_uid != 0
    assert said["ended-by"] == "poweroff"
    assert not Path(said["private"]).exists()
