"""The artifact cache: content-addressed folders, atomic writes, file locks.

Two `lab` processes may share one cache: every artifact is produced under an
exclusive lock and published with a rename, so a reader sees either nothing
or a complete artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError
from lab.host import reaper_client

log = logging.getLogger(__name__)


def default_root() -> Path:
    env = os.environ.get("LAB_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "kernel-lab").resolve()


def digest(parts: Iterable[bytes | str]) -> str:
    """A stable hash of ordered inputs; each part is length-prefixed so
    ("ab", "c") and ("a", "bc") never collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


LOCK_TIMEOUT_S = 4 * 3600.0  # longer than any build; LAB_LOCK_TIMEOUT_S overrides
LOCK_POLL_S = 0.2


def lock_timeout() -> float:
    raw = os.environ.get("LAB_LOCK_TIMEOUT_S", "")
    try:
        value = float(raw) if raw else LOCK_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"LAB_LOCK_TIMEOUT_S: a number of seconds, not {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"LAB_LOCK_TIMEOUT_S: a positive number of seconds, not {raw!r}")
    return value


def _holder_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def lock_holder(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it: pid, command, since when."""
    rec = _holder_record(path)
    if not rec.get("pid"):
        return "a process that left no record"
    since = rec.get("since", 0.0)
    pid = int(rec["pid"])
    state = "" if Path(f"/proc/{pid}").exists() else ", now gone: its leftovers are being stopped"
    return (f"pid {pid} (`{rec.get('command', '?')}`) since "
            f"{time.strftime('%H:%M:%S', time.localtime(since))}, "
            f"{time.time() - since:.0f}s ago{state}")


def _own_command() -> str:
    """This process's command line as `ps` shows it (`python -m lab.cli ...`)."""
    try:
        argv = Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        return shlex.join(a.decode(errors="replace") for a in argv)
    except OSError:
        return shlex.join(sys.argv)


@contextlib.contextmanager
def locked(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed) for the block.

    The file records the holder (pid, command, start time), so a waiting lab
    says who it waits for; after `timeout` seconds (default LAB_LOCK_TIMEOUT_S
    or 4 h) it gives up with an error naming the holder. The reaper keeps the
    lock while the holder's children live, should the holder die.
    """
    limit = lock_timeout() if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        start = time.monotonic()
        told: tuple[Any, Any] | None = None
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                rec = _holder_record(path)
                who = (rec.get("pid"), rec.get("since"))
                if who != told:  # say why we stand still, again if the holder changes
                    log.warning("waiting for %s: held by %s", path.name, lock_holder(path))
                    told = who
                if time.monotonic() - start > limit:
                    raise LabError(f"gave up waiting for {path} after {limit:.0f}s: "
                                   f"held by {lock_holder(path)}") from None
                time.sleep(LOCK_POLL_S)
        record = {"pid": os.getpid(), "command": _own_command(), "since": time.time()}
        os.ftruncate(f.fileno(), 0)
        os.pwrite(f.fileno(), (json.dumps(record) + "\n").encode(), 0)
        try:
            with reaper_client.lock_kept_by_reaper(f.fileno(), path.name):
                yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(f.fileno(), 0)  # released cleanly: no holder to show
            fcntl.flock(f, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def publish_dir(staging: Path, final: Path) -> None:
    """Move a fully written staging folder into place; an older one is replaced."""
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)
