"""The guest root image: Debian 12 from the host's apt sources, our init,
sshd with a host key the lab pins, and the lab's SSH key pair.

The image is immutable and cached by the hash of its recipe (`images/`);
every VM boots it through a throwaway qcow2 overlay.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab import cache, proc
from lab.errors import BuildError, ConfigError
from lab.host import require_tools

SUITE = "bookworm"
RECIPE_FILES = ("packages.txt", "lab-init", "sshd_config")
IMAGE_TOOLS = ("mmdebstrap", "mkfs.ext4", "ssh-keygen")
# Room for the suite's files and compiled guest programs on top of the rootfs.
FREE_SPACE_MIB = 2048


@dataclass(frozen=True)
class Image:
    key: str
    rootfs: Path  # ext4, never written after build
    ssh_key: Path  # the lab's private key (0600)
    host_key: str  # "ssh-ed25519 AAAA..." as the guest's sshd presents it
    seconds: float
    cached: bool

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "rootfs": str(self.rootfs),
            "ssh_key": str(self.ssh_key),
            "host_key": self.host_key,
            "seconds": round(self.seconds, 1),
            "cached": self.cached,
        }


def packages(recipe: Path) -> list[str]:
    lines = (recipe / "packages.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def recipe_key(recipe: Path) -> str:
    missing = [f for f in RECIPE_FILES if not (recipe / f).is_file()]
    if missing:
        raise ConfigError(f"image recipe {recipe} lacks {', '.join(missing)}")
    return cache.digest([SUITE, *((recipe / f).read_bytes() for f in RECIPE_FILES)])


def host_apt_sources() -> list[Path]:
    """The host's apt source files for our suite: the image uses the same mirror
    the host does, so no mirror address lives in the lab."""
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    found = []
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        active = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if any(SUITE in ln for ln in active):
            found.append(path)
    if not found:
        raise ConfigError(f"no apt source for Debian {SUITE} in /etc/apt on this host")
    return found


def build_image(
    recipe: Path, cache_root: Path, log_dir: Path, progress: Callable[[str], None] | None = None
) -> Image:
    key = recipe_key(recipe)
    art = cache_root / "images" / key[:24]
    if (art / "meta.json").is_file():
        return _load(art, cached=True)
    require_tools(IMAGE_TOOLS)
    log_path = log_dir / "image.log"
    start = time.monotonic()
    with cache.locked(cache_root / "locks" / "image.lock"):
        if (art / "meta.json").is_file():
            return _load(art, cached=True)
        staging = art.with_name(art.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        root = staging / "root"
        if progress:
            progress("mmdebstrap: installing packages")
        proc.run(
            ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages(recipe))}",
             "--dpkgopt=path-exclude=/usr/share/{doc,man,info,locale}/*",
             SUITE, root, *host_apt_sources()],
            timeout=1800, log_path=log_path, error=BuildError, what="mmdebstrap",
        )
        if progress:
            progress("installing init, sshd config and keys")
        _customize(recipe, root, staging, log_path)
        size_mib = _du_mib(root) + FREE_SPACE_MIB
        if progress:
            progress(f"mkfs.ext4 ({size_mib} MiB, sparse)")
        proc.run(
            ["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", root, staging / "rootfs.ext4",
             f"{size_mib}M"],
            timeout=600, log_path=log_path, error=BuildError, what="mkfs.ext4",
        )
        shutil.rmtree(root)
        (staging / "rootfs.ext4").chmod(0o444)
        cache.write_json(staging / "meta.json", {
            "seconds": time.monotonic() - start,
            "suite": SUITE,
            "packages": packages(recipe),
        })
        cache.publish_dir(staging, art)
    image = _load(art, cached=False)
    return Image(**{**image.__dict__, "seconds": time.monotonic() - start})


def _customize(recipe: Path, root: Path, staging: Path, log_path: Path) -> None:
    shutil.copy2(recipe / "lab-init", root / "sbin/lab-init")
    (root / "sbin/lab-init").chmod(0o755)
    ssh_dir = root / "etc/ssh"
    shutil.copy2(recipe / "sshd_config", ssh_dir / "sshd_config")
    # Replace whatever host keys the package generated with one we record.
    for old in ssh_dir.glob("ssh_host_*"):
        old.unlink()
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C"]
    proc.run([*keygen, "kernel-lab-guest", "-f", ssh_dir / "ssh_host_ed25519_key"],
             timeout=60, log_path=log_path, error=BuildError)
    proc.run([*keygen, "kernel-lab", "-f", staging / "id_ed25519"],
             timeout=60, log_path=log_path, error=BuildError)
    (staging / "id_ed25519").chmod(0o600)
    shutil.copy2(ssh_dir / "ssh_host_ed25519_key.pub", staging / "host_ed25519.pub")
    root_ssh = root / "root/.ssh"
    root_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(staging / "id_ed25519.pub", root_ssh / "authorized_keys")
    (root_ssh / "authorized_keys").chmod(0o600)
    (root / "etc/hostname").write_text("kernel-lab\n")
    (root / "etc/fstab").write_text("# root is mounted by the kernel; lab-init does the rest\n")
    (root / "opt/lab").mkdir(parents=True, exist_ok=True)


def _du_mib(path: Path) -> int:
    total = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
    return total // 2**20 + 1


def _load(art: Path, *, cached: bool) -> Image:
    meta = json.loads((art / "meta.json").read_text())
    host_key = " ".join((art / "host_ed25519.pub").read_text().split()[:2])
    return Image(
        key=art.name,
        rootfs=art / "rootfs.ext4",
        ssh_key=art / "id_ed25519",
        host_key=host_key,
        seconds=0.0 if cached else meta["seconds"],
        cached=cached,
    )
