"""The guest root image: Debian 12 from the host's apt sources, our init,
sshd with a host key the lab pins, and the lab's SSH key pair.

The image is immutable and cached by the hash of its recipe (`images/`);
every VM boots it through a throwaway qcow2 overlay. It holds the guest's
private host key, so it and the lab's private key are readable by their
owner only.

Two routes, one result. As root: mmdebstrap into a folder, customized in
place, then `mkfs.ext4 -d`. As an ordinary user (no root anywhere, only
/etc/subuid entries and newuidmap): mmdebstrap's unshare mode with every
customization as a hook (`upload` reads our files as the user, a shell hook
inside the namespace sets modes), written as ext2 by genext2fs and turned
into ext4 and grown with tune2fs, e2fsck and resize2fs, all on a file the
user owns. The route is part of the cache key.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BuildError, ConfigError, ToolMissing
from lab.host import cache, proc
from lab.host.tools import require_tools, subid_range

SUITE = "bookworm"
RECIPE_FILES = ("packages.txt", "lab-init", "sshd_config")
IMAGE_TOOLS = ("mmdebstrap", "mkfs.ext4", "ssh-keygen")
ROOTLESS_TOOLS = ("mmdebstrap", "genext2fs", "tune2fs", "e2fsck", "resize2fs", "ssh-keygen",
                  "newuidmap", "newgidmap")
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


def rootless() -> bool:
    return os.geteuid() != 0


def recipe_key(recipe: Path) -> str:
    missing = [f for f in RECIPE_FILES if not (recipe / f).is_file()]
    if missing:
        raise ConfigError(f"image recipe {recipe} lacks {', '.join(missing)}")
    route = ["rootless-ext2"] if rootless() else []
    return cache.digest([SUITE, *route, *((recipe / f).read_bytes() for f in RECIPE_FILES)])


def check_rootless() -> None:
    """What an ordinary user needs for mmdebstrap's unshare mode, with the fix."""
    require_tools(ROOTLESS_TOOLS)
    user = getpass.getuser()
    for kind in ("uid", "gid"):
        if subid_range(kind, user) is None:
            raise ToolMissing(
                f"building the image as {user} needs a range in /etc/sub{kind}: "
                f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")


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
    if rootless():
        check_rootless()
    else:
        require_tools(IMAGE_TOOLS)
    log_path = log_dir / "image.log"
    start = time.monotonic()
    with cache.locked(cache_root / "locks" / "image.lock"):
        if (art / "meta.json").is_file():
            return _load(art, cached=True)
        staging = art.with_name(art.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, mode=0o700)
        if rootless():
            _build_rootless(recipe, staging, log_path, progress)
        else:
            _build_as_root(recipe, staging, log_path, progress)
        (staging / "rootfs.ext4").chmod(0o400)  # it holds the guest's private host key
        cache.write_json(staging / "meta.json", {
            "seconds": time.monotonic() - start,
            "suite": SUITE,
            "packages": packages(recipe),
            "route": "rootless" if rootless() else "root",
        })
        cache.publish_dir(staging, art)
    image = _load(art, cached=False)
    return Image(**{**image.__dict__, "seconds": time.monotonic() - start})


def _mmdebstrap_args(recipe: Path) -> list[str]:
    return ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages(recipe))}",
            "--dpkgopt=path-exclude=/usr/share/{doc,man,info,locale}/*"]


@dataclass(frozen=True)
class Install:
    """One file the lab puts into the guest's root, with its mode."""

    src: Path  # on the host
    dst: str  # absolute, in the guest
    mode: int


GUEST_DIRS = (("/root/.ssh", 0o700), ("/opt/lab", 0o755))
GUEST_TEXTS = {
    "hostname": "kernel-lab\n",
    "fstab": "# root is mounted by the kernel; lab-init does the rest\n",
}


def _customization(recipe: Path, staging: Path, log_path: Path) -> list[Install]:
    """What both routes put into the guest: our init, sshd's config, a host key
    the lab records and the lab's public key, the host name and fstab. The
    keys are made in `staging/parts` (the lab's own key pair beside it)."""
    parts = staging / "parts"
    parts.mkdir(mode=0o700)
    host_key = parts / "ssh_host_ed25519_key"
    _keygen("kernel-lab-guest", host_key, log_path)
    _keygen("kernel-lab", staging / "id_ed25519", log_path)
    shutil.copy2(host_key.with_suffix(".pub"), staging / "host_ed25519.pub")
    for name, text in GUEST_TEXTS.items():
        (parts / name).write_text(text)
    return [
        Install(recipe / "lab-init", "/sbin/lab-init", 0o755),
        Install(recipe / "sshd_config", "/etc/ssh/sshd_config", 0o644),
        Install(host_key, "/etc/ssh/ssh_host_ed25519_key", 0o600),
        Install(host_key.with_suffix(".pub"), "/etc/ssh/ssh_host_ed25519_key.pub", 0o644),
        Install(staging / "id_ed25519.pub", "/root/.ssh/authorized_keys", 0o600),
        *(Install(parts / name, f"/etc/{name}", 0o644) for name in GUEST_TEXTS),
    ]


def _build_as_root(recipe: Path, staging: Path, log_path: Path,
                   progress: Callable[[str], None] | None) -> None:
    root = staging / "root"
    if progress:
        progress("mmdebstrap: installing packages")
    proc.run([*_mmdebstrap_args(recipe), SUITE, root, *host_apt_sources()],
             timeout=1800, log_path=log_path, error=BuildError, what="mmdebstrap")
    if progress:
        progress("installing init, sshd config and keys")
    # The host keys the package generated go: the guest presents the one we record.
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    for folder, mode in GUEST_DIRS:
        (root / folder.lstrip("/")).mkdir(mode=mode, parents=True, exist_ok=True)
    for item in _customization(recipe, staging, log_path):
        dst = root / item.dst.lstrip("/")
        shutil.copyfile(item.src, dst)
        dst.chmod(item.mode)
    shutil.rmtree(staging / "parts")
    size_mib = _du_mib(root) + FREE_SPACE_MIB
    if progress:
        progress(f"mkfs.ext4 ({size_mib} MiB, sparse)")
    proc.run(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", root, staging / "rootfs.ext4",
              f"{size_mib}M"], timeout=600, log_path=log_path, error=BuildError, what="mkfs.ext4")
    shutil.rmtree(root)


def _build_rootless(recipe: Path, staging: Path, log_path: Path,
                    progress: Callable[[str], None] | None) -> None:
    q = shlex.quote
    installs = _customization(recipe, staging, log_path)
    # `upload` reads our files as the user; shell hooks run inside the
    # namespace, where they make the folders and set the modes.
    setup = 'rm -f "$1"/etc/ssh/ssh_host_* && ' + " && ".join(
        f'mkdir -p -m {mode:o} "$1"{q(folder)}' for folder, mode in GUEST_DIRS)
    finish = " && ".join(f'chmod {i.mode:o} "$1"{q(i.dst)}' for i in installs)
    image = staging / "rootfs.ext4"
    if progress:
        progress("mmdebstrap (unshare): installing packages")
    proc.run([*_mmdebstrap_args(recipe), "--mode=unshare", "--format=ext2",
              f"--customize-hook={setup}",
              *(f"--customize-hook=upload {q(str(i.src))} {i.dst}" for i in installs),
              f"--customize-hook={finish}",
              SUITE, image, *host_apt_sources()],
             timeout=1800, log_path=log_path, error=BuildError, what="mmdebstrap --mode=unshare")
    shutil.rmtree(staging / "parts")
    if progress:
        progress("ext2 to ext4, with room for the suite")
    proc.run(["tune2fs", "-O", "extents,uninit_bg,dir_index,has_journal", "-L", "labroot", image],
             timeout=300, log_path=log_path, error=BuildError, what="tune2fs")
    # e2fsck exits 1 after fixing what tune2fs asks it to (new group descriptors).
    fsck = proc.run(["e2fsck", "-f", "-y", image], timeout=600, log_path=log_path, check=False)
    if fsck.exit_status > 1:
        raise BuildError(f"e2fsck found errors in the new image (exit {fsck.exit_status})",
                         log_path=log_path, excerpt=fsck.tail())
    size_mib = image.stat().st_size // 2**20 + FREE_SPACE_MIB
    proc.run(["resize2fs", image, f"{size_mib}M"], timeout=600, log_path=log_path,
             error=BuildError, what="resize2fs")


def _keygen(comment: str, path: Path, log_path: Path) -> None:
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
             timeout=60, log_path=log_path, error=BuildError)
    path.chmod(0o600)


def _du_mib(path: Path) -> int:
    total = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
    return total // 2**20 + 1


def _private(art: Path) -> None:
    """The lab's key and the image (the guest's host key inside) for their owner only.

    ssh refuses a key others can read; an image built before this rule is
    tightened here, and one that belongs to another user is refused.
    """
    for path, mode in ((art / "id_ed25519", 0o600), (art / "rootfs.ext4", 0o400)):
        st = path.stat()
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path} belongs to uid {st.st_uid}, not to you: use a cache of "
                              "your own (LAB_CACHE)")
        if st.st_mode & 0o777 != mode:
            path.chmod(mode)
    if art.stat().st_mode & 0o077:
        art.chmod(0o700)


def _load(art: Path, *, cached: bool) -> Image:
    _private(art)
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
