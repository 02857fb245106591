"""One synchronous QMP client per VM, with a timeout on every call.

Every QMP call of the lab goes through here. The handshake is done while QEMU
is paused (-S, lab.vm.machine), and a failed one says what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

QMP_TIMEOUT_S = 10.0


class _Received(logging.Handler):
    """Keeps the last messages qemu.qmp logged for one client (its debug log
    has the raw lines read from the socket), for the error if a handshake fails."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("<--"):  # a message read from the socket
            self.lines = [*self.lines[-3:], " ".join(text[4:].split())[:300]]


class Qmp:
    """A synchronous QMP client with a timeout on every call (one per VM)."""

    def __init__(self, path: Path, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient(name)
        self._path = path

    def _sync(self, coro: Any, timeout: float) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def connect(self, timeout: float = QMP_TIMEOUT_S) -> None:
        """Connect and negotiate; a failure says what arrived on the socket."""
        logger = self._client.logger
        seen = _Received()
        level, propagate = logger.level, logger.propagate
        # Debug records for our handler only: the lab's own log stays quiet,
        # and a failure is told once, by the error below.
        logger.addHandler(seen)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        try:
            self._sync(self._client.connect(str(self._path)), timeout)
        except Exception as exc:
            said = " | ".join(seen.lines) or "nothing"
            raise QmpHandshakeFailed(f"{exc} (qemu.qmp read: {said})") from exc
        finally:
            logger.removeHandler(seen)
            logger.setLevel(level)
            logger.propagate = propagate

    def execute(self, command: str, timeout: float = QMP_TIMEOUT_S, **args: Any) -> Any:
        return self._sync(self._client.execute(command, args or None), timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sync(self._client.disconnect(), QMP_TIMEOUT_S)
        self._loop.close()


class QmpHandshakeFailed(Exception):
    """The QMP greeting or capabilities negotiation failed; the text says what arrived."""
