"""One exception hierarchy; the CLI turns each branch into an exit code.

Exit codes: 0 ok, 1 a test or expectation failed, 2 bad input or usage,
3 infrastructure failure (build, boot, guest, host tools).
"""

from __future__ import annotations

from pathlib import Path


class LabError(Exception):
    """Base class. `log_path` and `excerpt` point the user at the evidence."""

    exit_code = 3

    def __init__(self, message: str, *, log_path: Path | None = None, excerpt: str = "") -> None:
        super().__init__(message)
        self.log_path = log_path
        self.excerpt = excerpt

    def describe(self) -> str:
        parts = [str(self)]
        if self.excerpt:
            parts.append(self.excerpt.rstrip())
        if self.log_path:
            parts.append(f"full log: {self.log_path}")
        return "\n".join(parts)


class ConfigError(LabError):
    """Bad input: a config key, a variant name, a manifest, a command line."""

    exit_code = 2


class SourceMissing(ConfigError):
    """A kernel source the lab was told to use is not on this machine."""

    def __init__(self, message: str, *, fix: str) -> None:
        super().__init__(message)
        self.fix = fix  # the command that installs it


class PatchError(ConfigError):
    """A patch that does not apply; names the patch file and the failing hunk."""


class KconfigUnmet(ConfigError):
    """Options of the lab's fragments did not stick in this tree's config (a
    missing dependency or a symbol this kernel does not have): about the tree,
    so a bisection cannot test the commit (125), not bad input of the lab."""


class ToolMissing(LabError):
    """A host tool is absent; the message says which package to install."""


class BuildError(LabError):
    """The kernel (or a guest program) failed to compile."""


class BootError(LabError):
    """The guest did not come up, or QEMU died."""


class QmpFailed(BootError):
    """QEMU runs but the lab could not talk to it over QMP (no socket, or the
    handshake failed on every try)."""


class QemuCrashed(BootError):
    """QEMU itself died of a signal nobody sent (a TCG segfault, say) while the
    kernel printed no report: the host's failure, worth one more boot."""


class GuestError(LabError):
    """The guest misbehaved after boot: SSH failure, a crash during a command."""


class GuestTimeout(GuestError):
    """A guest command did not finish within its time limit."""


class KernelFailure(GuestError):
    """The kernel under test failed: a verdict on the kernel, never on the lab.

    `kind` is "crash" (a report after which the kernel cannot go on), "hang"
    (a case stopped making progress) or "error" (a guest program hit an
    unexpected system-call failure). The evidence (the report, the blocked
    tasks' stacks) travels in `excerpt`.
    """

    kind = "crash"


class KernelCrash(KernelFailure):
    """The console showed a panic, oops, BUG or another fatal report."""


class KernelHang(KernelFailure):
    """Guest work stopped making progress, or the kernel reported a hang."""

    kind = "hang"


class GuestProgramFailed(KernelFailure):
    """A guest program of ours hit a system-call failure it did not expect
    (exit status 1): the kernel misbehaved under it."""

    kind = "error"


class ParseError(LabError):
    """Captured output (fio JSON, console log) could not be understood."""

