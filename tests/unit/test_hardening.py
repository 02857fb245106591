"""The QEMU command line, key files and host checks that keep the lab private."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.host import tools
from lab.vm import image
from lab.vm.qemu_argv import Accel, MachineSpec, qemu_argv, qemu_opt


def _argv(tmp: Path) -> list[str]:
    spec = MachineSpec(name="v,1", kernel=tmp / "bz,Image", rootfs=tmp / "root.ext4")
    return qemu_argv(spec, Accel("tcg", "test"), overlay=tmp / "a,b" / "o.qcow2",
                     qmp=tmp / "q,1.sock", console_log=tmp / "c,1.log", ssh_port=2222)


def test_user_network_is_restricted_to_the_ssh_forward(tmp_path):
    argv = _argv(tmp_path)
    netdev = argv[argv.index("-netdev") + 1].split(",")
    assert netdev[0] == "user" and "restrict=on" in netdev
    assert [p for p in netdev if p.startswith("hostfwd=")] == ["hostfwd=tcp:127.0.0.1:2222-:22"]


def test_commas_in_paths_are_escaped_for_qemu_options(tmp_path):
    argv = _argv(tmp_path)
    assert qemu_opt("a,b,,c") == "a,,b,,,,c"
    drive = argv[argv.index("-drive") + 1]
    assert f"file={tmp_path}/a,,b/o.qcow2," in drive
    assert f"path={tmp_path}/c,,1.log" in argv[argv.index("-chardev") + 1]
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path}/q,,1.sock,server=on,wait=off"
    assert argv[argv.index("-name") + 1] == "v,,1"
    # -kernel takes a plain file name: no option syntax, no escaping.
    assert argv[argv.index("-kernel") + 1] == f"{tmp_path}/bz,Image"


def _fake_image(art: Path, key_mode: int, image_mode: int) -> None:
    art.mkdir(mode=0o755)
    (art / "meta.json").write_text(json.dumps({"seconds": 1.0}))
    (art / "host_ed25519.pub").write_text("ssh-ed25519 AAAA kernel-lab-guest\n")
    (art / "id_ed25519").write_text("private")
    (art / "id_ed25519").chmod(key_mode)
    (art / "rootfs.ext4").write_text("")
    (art / "rootfs.ext4").chmod(image_mode)


def test_a_cached_image_is_made_private_to_its_owner(tmp_path):
    art = tmp_path / "img"
    _fake_image(art, 0o644, 0o444)
    img = image._load(art, cached=True)
    assert img.ssh_key.stat().st_mode & 0o777 == 0o600
    assert img.rootfs.stat().st_mode & 0o777 == 0o400  # the guest's host key is inside
    assert art.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_another_users_image_is_refused(tmp_path):
    art = tmp_path / "img"
    _fake_image(art, 0o600, 0o400)
    os.chown(art / "id_ed25519", 12345, 12345)
    with pytest.raises(ConfigError, match="belongs to uid 12345.*LAB_CACHE"):
        image._load(art, cached=True)


def test_subordinate_id_ranges_are_read_by_name_or_uid(tmp_path, monkeypatch):
    files = {"uid": "alice:100000:65536\nbob:200000:1000\n", "gid": f"{os.getuid()}:1:70000\n"}
    real = Path.read_text

    def fake(self: Path, *a, **k) -> str:
        if str(self) in ("/etc/subuid", "/etc/subgid"):
            return files[str(self)[-3:]]
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", fake)
    assert tools.subid_range("uid", "alice") == (100000, 65536)
    assert tools.subid_range("uid", "bob") is None  # too small for a Debian root
    assert tools.subid_range("gid", "whoever") == (1, 70000)
