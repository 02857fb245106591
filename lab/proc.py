"""The one place that starts host processes.

Every command is an argv list (never a shell string), runs with stdin closed
in its own process group, has a timeout, and is logged with `shlex.join`.
On timeout or Ctrl-C the whole group is killed (SIGTERM, then SIGKILL), so a
hung `make` or `mmdebstrap` never outlives the lab.
"""

from __future__ import annotations

import logging
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

from lab.errors import LabError

log = logging.getLogger(__name__)

TAIL_LINES = 40


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


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue


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
    """
    args = [os.fspath(a) for a in argv]
    command = shlex.join(args)
    label = what or args[0]
    log.debug("run: %s", command)
    full_env = {**os.environ, **env} if env is not None else None
    logfile = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = log_path.open("a", encoding="utf-8", errors="replace")
        logfile.write(f"$ {command}\n")
        logfile.flush()
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
    except FileNotFoundError as exc:
        if logfile:
            logfile.close()
        raise error(f"{label}: command not found: {args[0]}") from exc

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            tail.append(line.rstrip("\n"))
            if logfile:
                logfile.write(line)
            if on_line:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
    except BaseException:
        # Ctrl-C or an error in a callback: never leave the group behind.
        kill_group(proc)
        raise
    finally:
        reader.join(timeout=10)
        if logfile:
            logfile.write(f"[exit {proc.returncode} after {time.monotonic() - start:.1f}s]\n")
            logfile.close()
    result = CommandResult(command, proc.returncode, "".join(lines), "", time.monotonic() - start)
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
