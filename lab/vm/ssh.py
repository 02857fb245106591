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
import shlex
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paramiko
import tenacity
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from lab.errors import GuestError, GuestTimeout, KernelHang, LabError
from lab.host import teardown
from lab.host.proc import CommandResult
from lab.vm import console
from lab.vm.image import Image
from lab.vm.machine import Machine

WATCH_INTERVAL_S = 0.5
# Cases run together write to one commands log through several connections.
_LOG_LOCK = threading.Lock()


def _pinned_key(host_key: str) -> paramiko.PKey:
    kind, b64 = host_key.split()[:2]
    if kind != "ssh-ed25519":
        raise GuestError(f"unsupported pinned host key type {kind}")
    return paramiko.Ed25519Key(data=base64.b64decode(b64))


class Guest:
    """An SSH session to one VM. Use as `with Guest(vm, image) as g:`."""

    def __init__(self, machine: Machine, image: Image, *, command_log: Path | None = None,
                 tag: str = ""):
        self.machine = machine
        self.image = image
        self.command_log = command_log or machine.log_dir / f"{machine.spec.name}.commands.log"
        self.tag = tag  # names this connection's lines in the commands log
        self._conn: Connection | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        # While a case runs (see `watch_case`): when its budget ends, and where
        # its part of the console log starts.
        self._deadline: float | None = None
        self._budget_s = 0.0
        self._console_mark = 0

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

    def connect(self, deadline_s: float | None = None) -> None:
        """Connect, retrying while sshd comes up, until the boot deadline."""
        deadline_s = deadline_s or self.machine.boot_timeout_s

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
            self.machine.mark_ssh_ready()  # the boot's last phase (BootTimes.ssh_s)
        except paramiko.BadHostKeyException as exc:
            raise GuestError(f"{self.machine.spec.name}: guest host key does not match the "
                             "image's pinned key; refusing to connect") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise GuestError(f"{self.machine.spec.name}: no SSH within {deadline_s:.0f}s: {exc}",
                             excerpt=self.machine.console_text()[-3000:]) from exc

    def sibling(self, tag: str) -> Guest:
        """Another SSH connection to the same VM, with its own case budget and
        console mark: for a case that runs beside others (lab.suite.together).
        The caller closes it."""
        other = Guest(self.machine, self.image, command_log=self.command_log, tag=tag)
        deadline_s = 30 * self.machine.scale
        try:
            other.connect(deadline_s)
        except GuestError as exc:
            cause = exc.__cause__
            if isinstance(cause, paramiko.BadHostKeyException) or not isinstance(
                    cause, (OSError, EOFError, paramiko.SSHException)):
                raise
            # The guest served SSH until now and its QEMU is alive: a kernel
            # that stops accepting connections has stopped scheduling sshd.
            reports = console.find_trouble(self.machine.console_text()[self._console_mark:])
            raise KernelHang(f"{self.machine.spec.name}: the guest stopped accepting SSH "
                             f"connections (none within {deadline_s:.0f}s)",
                             excerpt="\n".join(r.excerpt for r in reports)
                             or self.machine.console_text()[-3000:],
                             log_path=self.machine.console_log) from exc
        return other

    def reconnect(self, deadline_s: float) -> None:
        """A fresh SSH connection after the old one was dropped (a command that
        never returned holds it), to gather evidence from a stuck guest."""
        self._drop_connection()
        self._conn = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.connect(deadline_s)

    @contextlib.contextmanager
    def watch_case(self, budget_s: float):
        """Bound one case: every command it runs ends by `budget_s` (KVM-scale)
        after the start, and a hang the kernel reports on the console ends it
        at once. Either way the case raises KernelHang."""
        self._budget_s = budget_s * self.machine.scale
        self._deadline = time.monotonic() + self._budget_s
        self._console_mark = len(self.machine.console_text())
        try:
            yield
        finally:
            self._deadline = None

    def console_since_case(self) -> str:
        """The console output since the current (or last) case began."""
        return self.machine.console_text()[self._console_mark:]

    def sysrq(self, key: str, timeout: float = 10.0) -> None:
        """Ask the guest kernel for a sysrq report (e.g. `w`: blocked tasks)."""
        if len(key) != 1:
            raise ValueError(f"one sysrq key, not {key!r}")
        self.run(f"echo {key} > /proc/sysrq-trigger", timeout=timeout)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _log(self, text: str) -> None:
        if self.tag:
            text = "".join(f"[{self.tag}] {line}" for line in text.splitlines(keepends=True))
        with _LOG_LOCK, self.command_log.open("a") as f:
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
        capped = False
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise self._hang(f"the case used up its {self._budget_s:.0f}s budget "
                                 f"before `{line}`")
            capped = remaining < limit
            limit = min(limit, remaining)
        self._log(f"$ {line}\n")
        start = time.monotonic()
        # The guest kills the command itself at the limit: closing an SSH
        # channel would leave it running, holding mounts for the next command.
        remote = f"timeout -s KILL {int(limit) + 1} sh -c {shlex.quote(line)}"
        conn = self._conn
        try:
            res = self._watch(lambda: conn.run(remote, hide=True, warn=True,
                                               timeout=limit + 10, in_stream=False),
                              line, limit, slack=5 if capped else 30)
        except GuestTimeout as exc:
            if capped:
                raise self._hang(f"`{line}` made no progress within the case's "
                                 f"{self._budget_s:.0f}s budget") from exc
            raise
        result = CommandResult(line, res.exited, res.stdout, res.stderr,
                               time.monotonic() - start)
        self._log(result.stdout + result.stderr + f"[exit {result.exit_status}]\n")
        # At the limit the guest's `timeout -s KILL` signals its whole process
        # group, itself included: SSH then brings no exit status back (-1),
        # where a shell in between would have said 137.
        if result.exit_status in (137, -1) and result.duration_s >= limit:
            if capped:
                raise self._hang(f"`{line}` made no progress within the case's "
                                 f"{self._budget_s:.0f}s budget")
            raise GuestTimeout(f"`{line}` timed out after {limit:.0f}s in {self.machine.spec.name}",
                             excerpt=result.tail())
        if check and not result.ok:
            raise GuestError(
                f"`{line}` failed with exit status {result.exit_status} in "
                f"{self.machine.spec.name}",
                excerpt=result.tail(),
            )
        return result

    def _hang(self, message: str) -> KernelHang:
        reports = console.find_trouble(self.console_since_case())
        return KernelHang(f"{self.machine.spec.name}: {message}",
                          excerpt="\n".join(r.excerpt for r in reports),
                          log_path=self.machine.console_log)

    def _check_hang_report(self, what: str) -> None:
        """A hang the kernel itself reported while a case runs ends the case now,
        not when its budget runs out."""
        if self._deadline is None:
            return
        reports = console.find_trouble(self.console_since_case())
        hangs = [r for r in reports if r.kind in console.HANG_KINDS]
        if hangs:
            self._drop_connection()
            raise KernelHang(f"{self.machine.spec.name}: kernel {hangs[0].kind} report "
                             f"while running `{what}`: {hangs[0].line}",
                             excerpt="\n".join(r.excerpt for r in reports),
                             log_path=self.machine.console_log)

    def _watch(self, call, what: str, limit: float, slack: float = 30):
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
                if teardown.hurried():  # a signal during teardown: no more waiting on SSH
                    self._drop_connection()
                    raise GuestError(f"`{what}` abandoned: the teardown was hurried") from None
                try:
                    self.machine.check_alive(f"while running `{what}`")
                except LabError:
                    self._drop_connection()  # unblock the SSH thread
                    raise
                self._check_hang_report(what)
                if time.monotonic() - start > limit + slack:
                    self._drop_connection()
                    raise GuestTimeout(f"`{what}` did not return within {limit:.0f}s") from None
            except CommandTimedOut as exc:
                self.machine.settle(0)
                self.machine.check_alive(f"while running `{what}`")
                raise GuestTimeout(
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
        """Ask the guest kernel to power off now (our init has no shutdown path).

        No `sync` first: the overlay is thrown away, and sync would block on a
        deadlocked FUSE mount. Bounded as a whole: a hung or stopped QEMU never
        answers the SSH channel request, whose own wait is paramiko's hour."""
        if self._conn is None:
            return
        conn, limit = self._conn, 5 * self.machine.scale
        with contextlib.suppress(Exception):
            self._watch(lambda: conn.run("echo o > /proc/sysrq-trigger", hide=True, warn=True,
                                         timeout=limit, in_stream=False),
                        "poweroff", limit, slack=2)
