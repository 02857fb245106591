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
  reaper (`lab/reaper.py`): a small process per lab that learns each child's
  session and, once the lab is gone, kills every process left in those
  sessions, removes the lab's private folders and only then lets go of the
  lab's cache locks. A descendant that starts a session of its own escapes it;
  none of the tools the lab runs does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.errors import LabError

log = logging.getLogger(__name__)

TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
REAPER = Path(__file__).with_name("reaper.py")
TOKEN_VAR = "KERNEL_LAB_REAPER_TOKEN"  # the same name as in reaper.py (it imports nothing)
# Signals that interrupt the lab (cli.main turns each into an unwinding).
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

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


# --- the reaper ------------------------------------------------------------------


class _Reaper:
    """The lab's side of `lab/reaper.py`: one per lab process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._owner = 0
        self._popen: subprocess.Popen | None = None
        self._broken = False
        self.token = ""

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen and self._owner == os.getpid() else None

    def _ensure(self) -> socket.socket | None:
        if self._sock is not None and self._owner == os.getpid():
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Its own session and no death signal: it must outlive us to clean up.
            self._popen = subprocess.Popen(
                [sys.executable, "-I", str(REAPER)], stdin=theirs, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except OSError as exc:
            ours.close()
            self._warn(exc)
            return None
        finally:
            theirs.close()
        self._sock, self._owner = ours, os.getpid()
        # Every child from now on carries this token: the reaper finds a
        # descendant that left its session (a daemon) by its environment.
        self.token = secrets.token_hex(12)
        os.environ[TOKEN_VAR] = self.token
        try:
            socket.send_fds(ours, [f"token {self.token}".encode()], [])
        except OSError as exc:
            self._warn(exc)
        return ours

    def _warn(self, exc: BaseException) -> None:
        if not self._broken:
            log.warning("the lab's reaper is unavailable (%s): children of a killed lab "
                        "may survive it", exc)
        self._broken = True

    def send(self, message: str, fds: Sequence[int] = ()) -> None:
        with self._lock:
            sock = self._ensure()
            if sock is None:
                return
            try:
                socket.send_fds(sock, [message.encode(errors="surrogateescape")], list(fds))
            except OSError as exc:
                self._warn(exc)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until the reaper has read everything sent so far (for tests)."""
        with self._lock:
            sock = self._ensure()
            if sock is None:
                return
            sock.send(b"ping")
            sock.settimeout(timeout)
            try:
                sock.recv(16)
            finally:
                sock.settimeout(None)


_reaper = _Reaper()  # per process by nature: the reaper watches this process's life


def private_dir(prefix: str) -> Path:
    """A new 0700 folder in the temp dir, removed by the reaper if the lab dies."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o700)
    _reaper.send(f"dir {path}")
    return path


def remove_private_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _reaper.send(f"-dir {path}")


@contextlib.contextmanager
def lock_kept_by_reaper(fd: int, name: str) -> Iterator[None]:
    """The reaper keeps a copy of the locked file `fd` open while the block runs.

    flock belongs to the open file, not to the process: if the lab dies, the
    lock stays held until the reaper has killed the lab's leftover processes,
    so nobody "recovers" a folder that an orphan is still writing.
    """
    token = f"{name}:{fd}"
    _reaper.send(f"lock {token}", [fd])
    try:
        yield
    finally:
        _reaper.send(f"-lock {token}")


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


# --- teardown ---------------------------------------------------------------------


_hurry = threading.Event()  # a signal came during a teardown
_teardown_depth = 0  # nested signals_deferred blocks (main thread only)


def hurried() -> bool:
    """A signal arrived during the teardown now running: skip the gentle steps."""
    return _hurry.is_set()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then deliver them.

    For teardown that must finish (a VM's shutdown ladder, its folder's
    removal): a second Ctrl-C would otherwise strand QEMU or the folder. Python
    runs signal handlers in the main thread whichever thread the kernel picked,
    so a thread's signal mask is not enough; the handlers themselves wait.
    A signal held here also hurries the teardown (`hurried()`): whoever asks
    twice wants the VM gone now, not after a polite ladder of timeouts.
    Elsewhere than the main thread this does nothing (no handler runs there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}

    def _hold(signum: int, _frame: object) -> None:
        log.warning("%s during teardown: stopping the VM at once, then finishing "
                    "the teardown", signal.Signals(signum).name)
        pending.append(signum)
        _hurry.set()

    for sig in INTERRUPTS:
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        previous[sig] = signal.signal(sig, _hold)
    global _teardown_depth
    _teardown_depth += 1
    try:
        yield
    finally:
        _teardown_depth -= 1
        if _teardown_depth == 0:
            _hurry.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # the restored handler runs (and raises) now
