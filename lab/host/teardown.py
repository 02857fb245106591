"""Teardown that must finish: signals held until it is done, and hurried by them."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _State:
    """Nested signals_deferred blocks of the main thread, and whether a signal
    came during them (one per process, like the signal handlers themselves)."""

    def __init__(self) -> None:
        self.hurry = threading.Event()
        self.depth = 0


_state = _State()


def hurried() -> bool:
    """A signal arrived during the teardown now running: skip the gentle steps."""
    return _state.hurry.is_set()


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
        _state.hurry.set()

    for sig in INTERRUPTS:
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        previous[sig] = signal.signal(sig, _hold)
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            _state.hurry.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # the restored handler runs (and raises) now
