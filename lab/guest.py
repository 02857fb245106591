"""SSH into a running Machine: run, put, get, with the guest's host key pinned.

Remote commands return the same `CommandResult` as local ones. Every call has
a timeout, and while a command runs the console is watched: a guest that
panics mid-command is reported with the kernel's own words, not as an SSH
timeout.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import logging
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import paramiko
import tenacity
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from lab.errors import GuestError, LabError
from lab.image import Image
from lab.machine import Machine
from lab.proc import CommandResult

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5


def _pinned_key(host_key: str) -> paramiko.PKey:
    kind, b64 = host_key.split()[:2]
    if kind != "ssh-ed25519":
        raise GuestError(f"unsupported pinned host key type {kind}")
    return paramiko.Ed25519Key(data=base64.b64decode(b64))


class Guest:
    """An SSH session to one VM. Use as `with Guest(vm, image) as g:`."""

    def __init__(self, machine: Machine, image: Image, *, command_log: Path | None = None):
        self.machine = machine
        self.image = image
        self.command_log = command_log or machine.log_dir / f"{machine.spec.name}.commands.log"
        self._conn: Connection | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def __enter__(self) -> Guest:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_connection(self) -> Connection:
        conn = Connection(
            host="127.0.0.1",
            port=self.machine.ssh_port,
            user="root",
            config=Config(overrides={"load_ssh_configs": False}),
            connect_timeout=int(10 * self.machine.scale),
            connect_kwargs={
                "key_filename": [str(self.image.ssh_key)],
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": 10 * self.machine.scale,
                "auth_timeout": 10 * self.machine.scale,
            },
        )
        # Never trust on first use: only the key recorded when the image was built.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client.get_host_keys().add(
            f"[127.0.0.1]:{self.machine.ssh_port}", "ssh-ed25519", _pinned_key(self.image.host_key)
        )
        return conn

    def connect(self) -> None:
        """Connect, retrying while sshd comes up, until the boot deadline."""
        deadline_s = self.machine.boot_timeout_s

        def attempt() -> Connection:
            self.machine.check_alive("while connecting over SSH")
            conn = self._new_connection()
            try:
                conn.open()
            except BaseException:
                conn.close()
                raise
            return conn

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(deadline_s),
            wait=tenacity.wait_fixed(0.5),
            retry=tenacity.retry_if_exception_type(
                (OSError, EOFError, paramiko.SSHException)
            ) & tenacity.retry_if_not_exception_type(paramiko.BadHostKeyException),
            reraise=True,
        )
        try:
            self._conn = retrying(attempt)
        except paramiko.BadHostKeyException as exc:
            raise GuestError(f"{self.machine.spec.name}: guest host key does not match the "
                             "image's pinned key; refusing to connect") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise GuestError(f"{self.machine.spec.name}: no SSH within {deadline_s:.0f}s: {exc}",
                             excerpt=self.machine.console_text()[-3000:]) from exc
        self.machine.poweroff_hook = self.poweroff

    def close(self) -> None:
        if self.machine.poweroff_hook == self.poweroff:
            self.machine.poweroff_hook = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _log(self, text: str) -> None:
        with self.command_log.open("a") as f:
            f.write(text)

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 120.0,
        check: bool = False,
        scale: bool = True,
    ) -> CommandResult:
        """Run a command in the guest; a str is a shell line, a list is quoted.

        The timeout is multiplied by the machine's scale factor unless `scale`
        is False. A kernel crash while waiting raises KernelCrash.
        """
        if self._conn is None:
            raise GuestError("not connected")
        line = command if isinstance(command, str) else shlex.join(command)
        limit = timeout * self.machine.scale if scale else timeout
        self._log(f"$ {line}\n")
        start = time.monotonic()
        # The guest kills the command itself at the limit: closing an SSH
        # channel would leave it running, holding mounts for the next command.
        remote = f"timeout -s KILL {int(limit) + 1} sh -c {shlex.quote(line)}"
        conn = self._conn
        res = self._watch(lambda: conn.run(remote, hide=True, warn=True, timeout=limit + 10,
                                           in_stream=False), line, limit)
        result = CommandResult(line, res.exited, res.stdout, res.stderr,
                               time.monotonic() - start)
        self._log(result.stdout + result.stderr + f"[exit {result.exit_status}]\n")
        if result.exit_status == 137 and result.duration_s >= limit:
            raise GuestError(f"`{line}` timed out after {limit:.0f}s in {self.machine.spec.name}",
                             excerpt=result.tail())
        if check and not result.ok:
            raise GuestError(
                f"`{line}` failed with exit status {result.exit_status} in "
                f"{self.machine.spec.name}",
                excerpt=result.tail(),
            )
        return result

    def _watch(self, call, what: str, limit: float):
        """Run `call` on the SSH thread while watching the console and a deadline.

        A kernel crash raises KernelCrash with the console excerpt; anything the
        SSH library raises becomes a GuestError (after checking for a crash,
        which would be the real cause).
        """
        future = self._pool.submit(call)
        start = time.monotonic()
        while True:
            try:
                res = future.result(timeout=WATCH_INTERVAL_S)
                break
            except concurrent.futures.TimeoutError:
                try:
                    self.machine.check_alive(f"while running `{what}`")
                except LabError:
                    self._drop_connection()  # unblock the SSH thread
                    raise
                if time.monotonic() - start > limit + 30:
                    self._drop_connection()
                    raise GuestError(f"`{what}` did not return within {limit:.0f}s") from None
            except CommandTimedOut as exc:
                self.machine.settle(0)
                self.machine.check_alive(f"while running `{what}`")
                raise GuestError(
                    f"`{what}` timed out after {limit:.0f}s in {self.machine.spec.name}",
                    excerpt=(exc.result.stdout + exc.result.stderr)[-2000:],
                ) from None
            except Exception as exc:
                self.machine.settle()  # a dying QEMU resets the connection first
                self.machine.check_alive(f"while running `{what}`")
                raise GuestError(f"SSH failed during `{what}`: {exc!r}") from exc
        # A command can "finish" because the guest died under it (the SSH
        # channel closes): the kernel's report is the real result then.
        self.machine.check_alive(f"while running `{what}`")
        return res

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def put(self, local: Path, remote: str, timeout: float = 120.0) -> None:
        assert self._conn is not None
        conn = self._conn
        self._watch(lambda: conn.put(str(local), remote), f"put {remote}",
                    timeout * self.machine.scale)

    def get(self, remote: str, local: Path, timeout: float = 120.0) -> None:
        assert self._conn is not None
        conn = self._conn
        self._watch(lambda: conn.get(remote, str(local)), f"get {remote}",
                    timeout * self.machine.scale)

    def poweroff(self) -> None:
        """Ask the guest kernel to power off now (our init has no shutdown path)."""
        if self._conn is None:
            return
        with contextlib.suppress(Exception):
            self._conn.run("sync; echo o > /proc/sysrq-trigger", hide=True, warn=True,
                           timeout=5 * self.machine.scale, in_stream=False)
