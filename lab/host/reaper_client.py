"""The lab's side of its reaper (`lab/host/reaper.py`): one per lab process,
started on first use; it learns the lab's sessions, folders and locks."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

REAPER = Path(__file__).with_name("reaper.py")
TOKEN_VAR = "KERNEL_LAB_REAPER_TOKEN"  # the same name as in reaper.py (it imports nothing)


class _Reaper:
    """The lab's side of `lab/host/reaper.py`: one per lab process, started on first use."""

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
