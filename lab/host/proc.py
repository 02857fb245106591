"""The one place that starts host processes.

Every command is an argv list (never a shell string), runs with stdin closed
in its own session (and so process group), has a timeout, and is logged with
`shlex.join`. On timeout, Ctrl-C or SIGTERM the whole group is killed
(SIGTERM, then SIGKILL), so a hung `make` or `mmdebstrap` never outlives the
lab.

Nothing is orphaned even when the lab itself is killed (`kill -9`, a closed
terminal):

- every child gets PR_SET_PDEATHSIG=SIGKILL. The kernel sends it when the
  *thread* that forked the child exits, so start children from the main thread
  (or one that outlives them): never from a short-lived worker thread;
- grandchildren (make's compilers, mmdebstrap's helpers) are covered by the
  reaper (`lab/host/reaper.py`, told by `reaper_client`): a small process per
  lab that learns each child's session and, once the lab is gone, kills every process left in those
  sessions, removes the lab's private folders and only then lets go of the
  lab's cache locks. A descendant that starts a session of its own is found
  by the token every child carries in its environment.

Teardown that must finish whatever signals arrive is `lab.host.teardown`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.errors import LabError
from lab.host.reaper_client import TOKEN_VAR, _reaper

log = logging.getLogger(__name__)

TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
# Signals that interrupt the lab (cli.main turns each into an unwinding).

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind; local and guest commands share it."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).rstrip()
        return "\n".join(text.splitlines()[-lines:])


# --- starting and stopping children ---------------------------------------------


def _die_with(parent: int) -> Callable[[], None]:
    sig = int(signal.SIGKILL)

    def setup() -> None:
        # Between fork and exec: one system call and a check, nothing that locks.
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the lab died before prctl took effect
            os._exit(255)

    return setup


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode(errors="replace")
    return int(data[data.rfind(")") + 2:].split()[19])


def _start(args: list[str], *, own_session: bool = True, **kwargs: Any) -> subprocess.Popen:
    """The only Popen of the lab's children (see the module docstring)."""
    _reaper.send("hello")  # start the reaper before the child, so no child goes unwatched
    if kwargs.get("env") is not None and _reaper.token:
        kwargs["env"] = {**kwargs["env"], TOKEN_VAR: _reaper.token}
    child = subprocess.Popen(args, start_new_session=own_session,
                             preexec_fn=_die_with(os.getpid()), close_fds=True, **kwargs)
    if own_session:
        _reaper.send(f"session {child.pid}")
    else:
        with contextlib.suppress(OSError):
            _reaper.send(f"pid {child.pid} {_start_time(child.pid)}")
    return child


def _forget(child: subprocess.Popen, own_session: bool = True) -> None:
    """After `child` ended: kill what is left of its group, stop watching it."""
    if own_session:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        _reaper.send(f"-session {child.pid}")
    else:
        _reaper.send(f"-pid {child.pid}")


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:  # SIGKILL not honoured within the grace: reap it anyway
        proc.wait(timeout=60)


def _check_timeout(timeout: float, label: str) -> None:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{label}: timeout must be a positive number, not {timeout!r}")


def _open_log(log_path: Path, command: str, error: type[LabError], label: str) -> IO[str]:
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = log_path.open("a", encoding="utf-8", errors="replace")
        logfile.write(f"$ {command}\n")
        logfile.flush()
    except OSError as exc:
        raise error(f"{label}: cannot write its log {log_path}: {exc.strerror or exc}") from exc
    return logfile


def run(
    argv: Sequence[str | os.PathLike],
    *,
    timeout: float,
    log_path: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
    error: type[LabError] = LabError,
    what: str = "",
) -> CommandResult:
    """Run `argv` to completion and return its result.

    stdout and stderr are merged (in order) into the result's stdout and
    appended to `log_path`; `on_line` sees each line as it arrives (progress).
    With `check`, a non-zero exit raises `error` carrying the output's tail.
    If the log cannot be written (a full disk) or `on_line` fails, the command
    is killed at once and `error` says why.
    """
    args = [os.fspath(a) for a in argv]
    command = shlex.join(args)
    label = what or args[0]
    _check_timeout(timeout, label)
    log.debug("run: %s", command)
    full_env = {**os.environ, **env} if env is not None else None
    logfile = _open_log(log_path, command, error, label) if log_path is not None else None
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    failure: list[BaseException] = []
    start = time.monotonic()
    try:
        proc = _start(args, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                      errors="replace")
    except OSError as exc:
        if logfile:
            logfile.close()
        raise error(f"{label}: cannot start {args[0]}: {exc.strerror or exc}") from exc

    def pump() -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line)
                tail.append(line.rstrip("\n"))
                if logfile:
                    logfile.write(line)
                if on_line:
                    on_line(line.rstrip("\n"))
        except BaseException as exc:  # a full disk under the log, a failing callback
            failure.append(exc)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the main thread's wait returns now

    reader = threading.Thread(target=pump, daemon=True, name=f"proc-{label}")
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
    except BaseException:
        # Ctrl-C or SIGTERM: never leave the group behind.
        kill_group(proc)
        raise
    finally:
        _forget(proc)
        reader.join(timeout=10)
        if logfile:
            with contextlib.suppress(OSError):
                logfile.write(f"[exit {proc.returncode} after {time.monotonic() - start:.1f}s]\n")
            with contextlib.suppress(OSError):
                logfile.close()
    result = CommandResult(command, proc.returncode, "".join(lines), "", time.monotonic() - start)
    if failure:
        exc = failure[0]
        reason = f"writing its log failed: {exc}" if isinstance(exc, OSError) else repr(exc)
        raise error(f"{label} stopped: {reason}: {command}", log_path=log_path,
                    excerpt="\n".join(tail)) from exc
    if timed_out:
        raise error(
            f"{label} timed out after {timeout:.0f}s: {command}",
            log_path=log_path,
            excerpt="\n".join(tail),
        )
    if check and not result.ok:
        raise error(
            f"{label} failed with exit status {result.exit_status}: {command}",
            log_path=log_path,
            excerpt="\n".join(tail),
        )
    return result


def capture(
    argv: Sequence[str | os.PathLike],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "",
    stdin: Path | None = None,
) -> CommandResult:
    """A short query (git, dpkg-query) whose stdout is data: stdout and stderr
    are kept apart and nothing is logged to a file. Never raises for the exit
    status; a timeout kills the group and raises LabError. Bytes that are not
    UTF-8 survive: `result.stdout.encode("utf-8", "surrogateescape")`.
    `stdin`: a file to read from (else stdin is closed)."""
    args = [os.fspath(a) for a in argv]
    label = what or args[0]
    _check_timeout(timeout, label)
    log.debug("capture: %s", shlex.join(args))
    full_env = {**os.environ, **env} if env is not None else None
    start = time.monotonic()
    try:
        with open(stdin, "rb") if stdin is not None else contextlib.nullcontext(
                subprocess.DEVNULL) as source:
            child = _start(args, cwd=cwd, env=full_env, stdin=source,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise LabError(f"{label}: cannot start {args[0]}: {exc.strerror or exc}") from exc
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(child)
        raise LabError(f"{label} timed out after {timeout:.0f}s: {shlex.join(args)}") from None
    except BaseException:
        kill_group(child)
        raise
    finally:
        _forget(child)
    return CommandResult(shlex.join(args), child.returncode,
                         out.decode("utf-8", "surrogateescape"),
                         err.decode("utf-8", "surrogateescape"), time.monotonic() - start)


class Child:
    """A long-lived process (QEMU) owned by the caller.

    Use as `with proc.spawn(...) as child:` or call `stop()`: either way its
    whole session is ended (SIGTERM, then SIGKILL) and it is reaped. `stop()`
    may be called any number of times.
    """

    def __init__(self, popen: subprocess.Popen, command: str, output: IO | None) -> None:
        self._popen = popen
        self.command = command
        self._output = output
        self._stopped = False

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after `timeout` seconds."""
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        """Signal the process itself (not its group), if it still runs."""
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def stop(self, grace_s: float = 5.0) -> None:
        if self._stopped:
            return
        try:
            kill_group(self._popen, grace_s)
        finally:
            self._stopped = True
            _forget(self._popen)
            if self._output is not None:
                with contextlib.suppress(OSError):
                    self._output.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(
    argv: Sequence[str | os.PathLike],
    *,
    output: Path | None = None,
    cwd: Path | None = None,
    error: type[LabError] = LabError,
    what: str = "",
) -> Child:
    """Start `argv` in the background; stdout and stderr are appended to `output`."""
    args = [os.fspath(a) for a in argv]
    command = shlex.join(args)
    label = what or args[0]
    log.debug("spawn: %s", command)
    out = _open_log(output, command, error, label) if output is not None else None
    try:
        popen = _start(args, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=out if out is not None else subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)
    except OSError as exc:
        if out is not None:
            out.close()
        raise error(f"{label}: cannot start {args[0]}: {exc.strerror or exc}") from exc
    return Child(popen, command, out)


def interactive(argv: Sequence[str | os.PathLike], *, timeout: float, what: str = "") -> int:
    """Run `argv` on the user's terminal (stdin, stdout, stderr inherited) and
    return its exit status. It stays in the terminal's session, so keys reach
    it; it dies with the lab all the same (death signal, reaper by pid)."""
    args = [os.fspath(a) for a in argv]
    label = what or args[0]
    _check_timeout(timeout, label)
    log.debug("interactive: %s", shlex.join(args))
    try:
        child = _start(args, own_session=False)
    except OSError as exc:
        raise LabError(f"{label}: cannot start {args[0]}: {exc.strerror or exc}") from exc
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{label}: still running after {timeout:.0f}s; stopped it") from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        _forget(child, own_session=False)
