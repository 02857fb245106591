#!/usr/bin/env python3
"""Reproduce the QMP greeting race of QEMU 7.2 (Debian 12) without the lab.

Why this exists: a new user's first `make run` once failed because the first
message on a fresh QMP connection was an event, not the greeting. In QEMU 7.2
the socket chardev runs in the monitor's I/O thread, and the greeting is
written by the OPENED handler there; an event emitted by the main loop in
between goes to every QMP monitor that is not in capability negotiation. A
monitor is not in negotiation before its first connection (its command table
is still unset) and after an earlier client negotiated on it. So a client can
read an event first.

What this does: QEMU with no machine (`-machine none -S`) and two QMP
monitors. A process on monitor B sends stop/cont as fast as QEMU answers, so
the main loop emits STOP/RESUME events all the time. The main thread connects
to monitor A N times; on each connection it reads the first line, records it
if it is not a greeting, then negotiates (so the next connection finds the
monitor out of negotiation, as a lab's second connection would) and closes.

Usage: python3 tools/qmp_greeting_race.py [--connections 200]
Exit 0 with a count either way; the lab itself avoids the race by starting
QEMU paused (-S) so that no event exists while it connects (lab/vm/machine.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import tempfile
import time

QEMU = "qemu-system-x86_64"


def _connect(path: str, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _lines(sock: socket.socket):
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield json.loads(line)


def _negotiate(sock: socket.socket, lines) -> None:
    sock.sendall(b'{"execute": "qmp_capabilities"}\n')
    for msg in lines:
        if "return" in msg or "error" in msg:
            return


def _churn(path: str, stop, events) -> None:
    sock = _connect(path)
    lines = _lines(sock)
    next(lines)  # this monitor's greeting
    _negotiate(sock, lines)
    batch = b'{"execute": "cont"}\n{"execute": "stop"}\n' * 50
    while not stop.is_set():
        # Pipelined and counted without parsing, so that QEMU's main loop is
        # busy emitting events rather than waiting for this reader.
        sock.sendall(batch)
        replies = 0
        while replies < 100:
            data = sock.recv(1 << 20)
            if not data:
                return
            replies += data.count(b'"return"') + data.count(b'"error"')
            events.value += data.count(b'"event"')
    sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qmp-race-") as tmp:
        mon_a, mon_b = os.path.join(tmp, "a.sock"), os.path.join(tmp, "b.sock")
        qemu = subprocess.Popen(
            [QEMU, "-machine", "none", "-S", "-nodefaults", "-display", "none",
             "-qmp", f"unix:{mon_a},server=on,wait=off",
             "-qmp", f"unix:{mon_b},server=on,wait=off"],
            stdin=subprocess.DEVNULL)
        # A process of its own, so that the events keep coming while this one
        # connects (threads would take turns on the GIL).
        stop, events = multiprocessing.Event(), multiprocessing.Value("q", 0)
        churn = multiprocessing.Process(target=_churn, args=(mon_b, stop, events), daemon=True)
        try:
            _connect(mon_b).close()  # QEMU is listening
            churn.start()
            first_lines = []
            for _ in range(args.connections):
                sock = _connect(mon_a)
                lines = _lines(sock)
                first = next(lines)
                if "QMP" not in first:
                    first_lines.append(first)
                    for msg in lines:  # the greeting still comes, after the event
                        if "QMP" in msg:
                            break
                _negotiate(sock, lines)
                sock.close()
        finally:
            stop.set()
            churn.join(timeout=10)
            if churn.is_alive():
                churn.kill()
            qemu.terminate()
            qemu.wait(timeout=10)
    print(f"{len(first_lines)} of {args.connections} connections read something else "
          f"before the greeting ({events.value} events emitted meanwhile)")
    for msg in first_lines[:5]:
        print("  first message:", json.dumps(msg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
