"""The lab's reaper: a tiny process that cleans up after a lab that died.

`lab.proc` starts one per lab process, in a session of its own, and keeps the
other end of a unix socket (its stdin). Over it the lab says which sessions it
started (every child is a session leader), which single processes (an
interactive ssh in the terminal's session), which folders are its own (a VM's
private folder) and which lock files it holds (the open file itself travels
over the socket, so the flock stays held while the reaper lives).

When the socket reaches end-of-file (the lab exited, however: `kill -9`
included) the reaper kills every process still in those sessions, and every
process that carries the lab's token in its environment (a descendant that
started a session of its own, e.g. a daemon, keeps the environment it was
given), waits until they are gone, removes the folders, and only then exits,
dropping the locks.
A waiting lab can therefore never take a lock while the previous holder's
`make` or `mmdebstrap` still writes under it.

Standard library only, run as a script (`python -I reaper.py`): it must not
import anything that could fail half-way through a dying lab.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import time

GONE_WAIT_S = 30.0  # SIGKILLed processes leave within milliseconds; D-state can take longer
TOKEN_VAR = "KERNEL_LAB_REAPER_TOKEN"  # lab.host.proc puts it in every child's environment


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session id, start time in ticks) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2:].split()
    return fields[0], int(fields[3]), int(fields[19])


def carries(pid: int, marker: bytes) -> bool:
    """Whether the process's environment holds `marker` (VAR=value)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def members(sessions: set[int], marker: bytes = b"") -> list[int]:
    """Live (non-zombie) processes in any of `sessions` or carrying `marker`
    in their environment, this one excluded."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        st = proc_stat(int(entry))
        if st is None or st[0] == "Z":
            continue
        if st[1] in sessions or (marker and carries(int(entry), marker)):
            found.append(int(entry))
    return found


def alive(pid: int, start: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[0] != "Z" and st[2] == start


def kill_all(sessions: set[int], pids: dict[int, int], marker: bytes = b"") -> None:
    deadline = time.monotonic() + GONE_WAIT_S
    while time.monotonic() < deadline:
        left = members(sessions, marker) + [p for p, start in pids.items() if alive(p, start)]
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def serve(sock: socket.socket) -> None:
    sessions: set[int] = set()
    pids: dict[int, int] = {}
    dirs: set[str] = set()
    locks: dict[str, int] = {}
    marker = b""
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 8192, 4)
        except InterruptedError:
            continue
        except OSError:
            break
        if not msg:
            break
        verb, _, arg = msg.decode(errors="surrogateescape").partition(" ")
        if verb == "token":
            marker = f"{TOKEN_VAR}={arg}".encode()
        elif verb == "session":
            sessions.add(int(arg))
        elif verb == "-session":
            sessions.discard(int(arg))
        elif verb == "pid":
            pid, start = arg.split()
            pids[int(pid)] = int(start)
        elif verb == "-pid":
            pids.pop(int(arg), None)
        elif verb == "dir":
            dirs.add(arg)
        elif verb == "-dir":
            dirs.discard(arg)
        elif verb == "lock" and fds:
            locks[arg] = fds.pop(0)
        elif verb == "-lock" and arg in locks:
            os.close(locks.pop(arg))
        for fd in fds:  # an fd that came with the wrong message
            os.close(fd)
        if verb == "ping":
            sock.send(b"pong")
    kill_all(sessions, pids, marker)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
    # Exiting closes the lock files: only now may another lab take them.


def main() -> None:
    # A terminal's Ctrl-C or hang-up is for the lab; the reaper ends with it.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    sock = socket.socket(fileno=sys.stdin.fileno())
    serve(sock)


if __name__ == "__main__":
    main()
