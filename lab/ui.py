"""Progress for long work: one line per step on stderr, live detail while it runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape


class Step:
    def __init__(self, ui: Ui, name: str, status) -> None:
        self.ui = ui
        self.name = name
        self._status = status
        self._start = time.monotonic()
        self.result = ""
        self.detail = ""
        self._last = 0.0

    def update(self, message: str) -> None:
        # kbuild prints hundreds of lines a second: refresh at most 5 times a second.
        now = time.monotonic()
        if self._status is not None and now - self._last > 0.2:
            self._status.update(f"{self.name}: {message}")
            self._last = now

    def done(self, result: str, detail: str = "") -> None:
        self.result = result
        self.detail = detail

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start


class Ui:
    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        if not self.quiet and not self.live:
            self.console.print(f"[bold]>[/] {name} ...")
        status_cm = self.console.status(name) if self.live else contextlib.nullcontext()
        with status_cm as status:
            step = Step(self, name, status)
            try:
                yield step
            except BaseException:
                if not self.quiet:
                    self.console.print(f"[red]x[/] {name}: failed after {step.elapsed:.1f}s")
                raise
        if not self.quiet:
            result = step.result or "done"
            extra = f" [dim]{step.detail}[/]" if step.detail else ""
            self.console.print(f"[green]✓[/] {name}: {result} ({step.elapsed:.1f}s){extra}")

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[cyan]i[/] {message}")

    def error(self, message: str) -> None:
        # Messages name config sections ("[tests] scripts"): not rich markup.
        self.console.print(f"[red]error:[/] {escape(message)}")
