"""A lane's SSH connection to a guest that served SSH until now: when none
comes up, the kernel stopped scheduling sshd (a hang with the console as
evidence), not the lab breaking; a host key that no longer matches stays
the lab's error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from lab.errors import GuestError, KernelHang
from lab.vm import ssh

CONSOLE = ("[   75.9] INFO: task labprobe:1106 blocked for more than 10 seconds.\n"
           "[   75.9]       Not tainted 6.1.192 #1\n")


def _guest(tmp_path: Path) -> ssh.Guest:
    machine = SimpleNamespace(scale=4.0, log_dir=tmp_path, console_log=tmp_path / "console.log",
                              spec=SimpleNamespace(name="mutant"),
                              console_text=lambda: CONSOLE)
    return ssh.Guest(machine, SimpleNamespace(), command_log=tmp_path / "commands.log")


def _refuse(cause: BaseException):
    def connect(self, deadline_s=None):
        raise GuestError(f"mutant: no SSH within {deadline_s:.0f}s: {cause}") from cause
    return connect


def test_a_guest_that_stops_accepting_ssh_is_a_kernel_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh.Guest, "connect", _refuse(paramiko.SSHException("No existing session")))
    with pytest.raises(KernelHang, match="stopped accepting SSH connections") as caught:
        _guest(tmp_path).sibling("lock-pairing")
    assert "blocked for more than 10 seconds" in caught.value.excerpt


def test_a_changed_host_key_stays_the_labs_error(tmp_path, monkeypatch):
    key = paramiko.RSAKey.generate(1024)
    cause = paramiko.BadHostKeyException("127.0.0.1", key, key)
    monkeypatch.setattr(ssh.Guest, "connect", _refuse(cause))
    with pytest.raises(GuestError) as caught:
        _guest(tmp_path).sibling("lock-pairing")
    assert not isinstance(caught.value, KernelHang)
