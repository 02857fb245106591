"""The QMP handshake: QEMU starts paused and runs only after `cont`, and a
greeting that is not one fails with what arrived on the socket."""
import json
import socket
import threading
import time

import pytest

from lab.host import proc
from lab.vm.qemu_argv import QEMU
from lab.vm.qmp import Qmp, QmpHandshakeFailed


def _fake_monitor(path, first: dict) -> threading.Thread:
    """A socket that sends one message that is not a greeting, then waits."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.sendall(json.dumps(first).encode() + b"\r\n")
        conn.recv(1024)
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_a_first_message_that_is_not_a_greeting_is_named_in_the_error(tmp_path):
    event = {"timestamp": {"seconds": 1, "microseconds": 2},
             "event": "NIC_RX_FILTER_CHANGED", "data": {"path": "/machine/net0"}}
    t = _fake_monitor(tmp_path / "q.sock", event)
    qmp = Qmp(tmp_path / "q.sock", "fake")
    with pytest.raises(QmpHandshakeFailed, match="NIC_RX_FILTER_CHANGED"):
        qmp.connect(timeout=10)
    qmp.close()
    t.join(10)


def test_a_paused_qemu_runs_only_after_the_handshake(tmp_path):
    sock = tmp_path / "q.sock"
    argv = [QEMU, "-machine", "none", "-nodefaults", "-display", "none", "-S",
            "-qmp", f"unix:{sock},server=on,wait=off"]
    with proc.spawn(argv, output=tmp_path / "qemu.log", what="QEMU") as child:
        for _ in range(300):
            if sock.exists():
                break
            time.sleep(0.1)
        qmp = Qmp(sock, "paused")
        try:
            qmp.connect()
            assert qmp.execute("query-status")["status"] == "prelaunch"
            qmp.execute("cont")
            assert qmp.execute("query-status")["status"] == "running"
            qmp.execute("quit")
        finally:
            qmp.close()
        assert child.wait(timeout=30) == 0
