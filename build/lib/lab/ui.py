"""Progress for long work: one line per step on stderr, live detail while it
runs; and where a run's time went, phase by phase."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

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


# The phases every run reports, in this order; others follow in first-seen order.
PHASES = ("build", "image", "boot", "deploy", "cases", "fio", "report")


class PhaseTimer:
    """Wall time per phase of a run (build, image, boot, ...).

    Phases nest: time is charged to the innermost phase only, so the phases
    and `other` (time in none of them) add up to the run's wall time. Each
    boot's own record (lab.machine.BootTimes) is kept in `boots`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = self._since = clock()
        self._stack: list[str] = []
        self.seconds: dict[str, float] = {}
        self.boots: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def _charge(self) -> None:
        now = self._clock()
        if self._stack:
            name = self._stack[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now

    def to_dict(self) -> dict[str, Any]:
        """For results.json: seconds per phase, `other`, the total, every boot."""
        self._charge()
        total = self._clock() - self._start
        order = [p for p in PHASES if p in self.seconds]
        order += [p for p in self.seconds if p not in PHASES]
        return {"phases_s": {p: round(self.seconds[p], 2) for p in order},
                "other_s": round(total - sum(self.seconds.values()), 2),
                "total_s": round(total, 2), "boots": list(self.boots)}

    def summary(self) -> str:
        """One line: `build 0.3s, boot 9.1s, ..., other 0.4s (total 93.1s)`."""
        d = self.to_dict()
        parts = [f"{p} {s:.1f}s" for p, s in d["phases_s"].items()]
        parts.append(f"other {d['other_s']:.1f}s")
        return f"time: {', '.join(parts)} (total {d['total_s']:.1f}s)"


class Ui:
    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.phases = PhaseTimer()

    def phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Charge the time inside the block to phase `name` (see PhaseTimer)."""
        return self.phases.phase(name)

    @contextlib.contextmanager
    def step(self, name: str, phase: str | None = None) -> Iterator[Step]:
        """A step of the run, shown as it goes; with `phase`, its time counts there."""
        with self.phase(phase) if phase else contextlib.nullcontext(), \
                self._step(name) as step:
            yield step

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[Step]:
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
        self.result(name, step.result or "done", step.elapsed, step.detail)

    def result(self, name: str, result: str, seconds: float, detail: str = "") -> None:
        """A finished step's line (also for work that ran inside another step)."""
        if not self.quiet:
            extra = f" [dim]{escape(detail)}[/]" if detail else ""
            self.console.print(f"[green]✓[/] {name}: {result} ({seconds:.1f}s){extra}")

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[cyan]i[/] {message}")

    def error(self, message: str) -> None:
        # Messages name config sections ("[tests] scripts"): not rich markup.
        self.console.print(f"[red]error:[/] {escape(message)}")
