"""A user's own test scripts, run in each variant's guest (`lab test --script`).

A script is copied into the guest and run with a timeout, its working
directory a fresh folder, with our FUSE server (labfs, the benchmark's
options) mounted for it:

    LAB_FUSE_MOUNT    the labfs mount point, e.g. /mnt/user
    LAB_FUSE_BACKING  the folder labfs stores the files in
    LAB_VARIANT       the variant's name (baseline, patched, v3, ...)
    LAB_FEATURES      what the variant claims, comma-separated
    LAB_TIMEOUT_S     the script's own time limit, in seconds

It passes when it exits 0 and, if its stdout is KTAP or TAP, every test in
it is ok (or SKIP, TODO, XFAIL) and the output is consistent; the KTAP/TAP
tests become the check's sub-results. Output that is neither leaves the
verdict to the exit status and says it was not parsed. A kernel report
during the script fails it like any case (suite.run_case's health check).
At the limit the script's session is killed, after the guest's blocked-task
stacks (sysrq w) are taken for the result.

The script runs detached from the SSH session, which only polls for it: a
script stuck in the kernel cannot take the SSH channel down with it.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError, GuestError
from lab.guest.workloads import REMOTE, FuseMount, ServerOptions
from lab.results import CheckKind
from lab.suite import ktap
from lab.suite.checks import blocked_stacks
from lab.suite.spec import Case, CaseContext, Observation
from lab.vm import console
from lab.vm.ssh import Guest

REMOTE_DIR = f"{REMOTE}/scripts"
RUN_DIR = "/run/lab-scripts"
MOUNT_NAME = "user"
DEFAULT_TIMEOUT_S = 300.0  # KVM-scale, like every guest timeout of the lab
STDOUT_LIMIT = 1 << 20
STDERR_LIMIT = 64 << 10
TAIL_LINES = 30
FIRST_NUMBER = 101  # after the suite's own case numbers
# The case's budget beyond the script's own limit (KVM-scale): copying it in,
# mounting, collecting output and stacks, unmounting.
SETUP_BUDGET_S = 30.0


@dataclass(frozen=True)
class Script:
    path: Path  # absolute, on the host

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def check_name(self) -> str:
        return f"script:{self.name}"

    @property
    def identity(self) -> dict[str, str]:
        return {"script": self.name, "path": str(self.path)}


def resolve(paths: Iterable[str | os.PathLike[str]], where: str) -> tuple[Script, ...]:
    """Scripts that exist and are executable, with distinct names; else ConfigError
    naming `where` (an option or a config key) and the file."""
    found: dict[str, Script] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"{where}: {raw}: no such file")
        if not path.is_file():
            raise ConfigError(f"{where}: {raw}: not a regular file")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{where}: {raw}: not executable (chmod +x {raw})")
        script = Script(path)
        other = found.get(script.name)
        if other is not None and other.path != path:
            raise ConfigError(f"{where}: two scripts named {script.name} ({other.path} and "
                              f"{path}); results are keyed by file name")
        found[script.name] = script
    return tuple(found.values())


# --- running one script in a guest ---------------------------------------------------


@dataclass(frozen=True)
class ScriptRun:
    """What happened in the guest, before any judgement."""

    exit_status: int | None  # None: killed at the limit
    stdout: str
    stderr: str
    duration_s: float
    limit_s: float
    blocked_tasks: str = ""  # sysrq-w's report, taken at the limit
    stdout_truncated: bool = False
    cleanup: str = ""  # anything the lab had to force afterwards

    @property
    def timed_out(self) -> bool:
        return self.exit_status is None


def _q(text: str) -> str:
    return shlex.quote(text)


def run_in_guest(guest: Guest, script: Script, env: Mapping[str, str], limit_s: float
                 ) -> ScriptRun:
    """Copy the script in, run it detached with `env`, wait up to `limit_s`."""
    remote = f"{REMOTE_DIR}/{script.name}"
    guest.run(f"mkdir -p {_q(REMOTE_DIR)}", check=True)
    guest.put(script.path, remote)
    guest.run(f"chmod 755 {_q(remote)}", check=True)
    return run_detached(guest, script.name, _q(remote), env, limit_s)


def run_detached(guest: Guest, name: str, command: str, env: Mapping[str, str],
                 limit_s: float) -> ScriptRun:
    """Run the shell `command` in a fresh folder of the guest, detached from the
    SSH session (in a session of its own), with `env`; wait up to `limit_s`,
    then collect its status and output, killing whatever is left of it."""
    rdir = f"{RUN_DIR}/{name}"
    guest.run(f"rm -rf {_q(rdir)} && mkdir -p {_q(rdir)}/work", check=True)
    # The inner sh leads a new session, so the command and everything it
    # starts can be killed as one group; it writes the status when done. The
    # outputs are opened for appending: a program that opens /dev/stdout
    # again (kselftest's runner does) then adds to them instead of writing
    # over what came before.
    wrapper = ('echo $$ > "$1/pid"; sh -c "$0" >> "$1/stdout" 2>> "$1/stderr" < /dev/null; '
               'echo $? > "$1/status.tmp" && mv "$1/status.tmp" "$1/status"')
    assignments = " ".join(f"{k}={_q(v)}" for k, v in env.items())
    start = time.monotonic()
    guest.run(f"cd {_q(rdir)}/work && env {assignments} setsid sh -c {_q(wrapper)} "
              f"{_q(command)} {_q(rdir)} > /dev/null 2>&1 < /dev/null &", check=True)
    wait = (f"end=$(( $(date +%s) + {math.ceil(limit_s)} )); "
            f"while [ ! -e {_q(rdir)}/status ]; do "
            "[ $(date +%s) -ge $end ] && exit 3; sleep 0.2; done")
    waited = guest.run(wait, timeout=limit_s + 60, scale=False)
    duration = time.monotonic() - start
    blocked = "\n\n".join(blocked_stacks(guest)) if waited.exit_status == 3 else ""
    # Whatever is left of the session (all of it, after a timeout) goes; then
    # the status and both outputs in one round trip (base64: the output may
    # be anything).
    after = guest.run(
        f"cd {_q(rdir)} && {{ kill -KILL -- -$(cat pid) 2>/dev/null; "
        "cat status 2>/dev/null || echo none; stat -c %s stdout; "
        f"head -c {STDOUT_LIMIT} stdout | base64 -w0; echo; "
        f"tail -c {STDERR_LIMIT} stderr | base64 -w0; echo; }}", check=True)
    status_text, size, out64, err64 = (after.stdout.split("\n") + ["", "", "", ""])[:4]
    status = None if status_text.strip() == "none" else int(status_text)
    return ScriptRun(status, _decode(out64), _decode(err64), duration, limit_s, blocked,
                     int(size) > STDOUT_LIMIT)


def _decode(b64: str) -> str:
    return base64.b64decode(b64.strip()).decode(errors="replace")


# --- judging -------------------------------------------------------------------------


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def judge(identity: Mapping[str, str], run: ScriptRun) -> Observation:
    """Pass/fail by exit status and the KTAP/TAP results, as an Observation;
    `identity` (what ran: the script's name and path, a kselftest target)
    leads its details."""
    report = ktap.parse(run.stdout)
    expected = f"exit 0 within {run.limit_s:.0f}s" + ("; every KTAP/TAP test ok"
                                                       if report.parsed else "")
    if run.timed_out:
        names = console.blocked_task_names(run.blocked_tasks)
        head = f"timed out after {run.limit_s:.0f}s" + (
            f"; blocked in the kernel: {', '.join(names[:5])}" if names
            else "; no task blocked in the kernel")
    else:
        head = f"exit {run.exit_status}"
    # What decided the verdict comes first (the matrix shows the first part).
    if run.timed_out or not report.parsed or (run.exit_status != 0 and report.ok):
        observed = f"{head}; {report.summary()}"
    else:
        observed = f"{report.summary()}; {head}"
    if run.stdout_truncated:
        observed += f"; stdout cut at {STDOUT_LIMIT} bytes"
    if run.cleanup:
        observed += f"; {run.cleanup}"
    if not run.timed_out and run.exit_status != 0 and run.stderr.strip():
        observed += f"; stderr: {run.stderr.strip().splitlines()[-1][:200]}"
    passed = run.exit_status == 0 and (not report.parsed or report.ok)
    details = {
        **identity,
        "exit_status": run.exit_status,
        "limit_s": round(run.limit_s, 1),
        "seconds": round(run.duration_s, 2),
        "format": report.format,
        "parsed": report.parsed,
        "parse_note": report.note,
        "problems": list(report.problems),
        "stdout_tail": _tail(run.stdout),
        "stderr_tail": _tail(run.stderr),
    }
    if run.blocked_tasks:
        details["blocked_tasks"] = run.blocked_tasks
    return Observation(passed, expected, observed, details, subtests=report.subtests(),
                       timed_out=run.timed_out)


# --- as suite cases ------------------------------------------------------------------


def observe(ctx: CaseContext, script: Script, variant: str, timeout_s: float) -> Observation:
    """Mount labfs, run the script against it, judge, unmount (by force if needed)."""
    guest = ctx.guest
    limit = timeout_s * guest.machine.scale
    mount = FuseMount(guest, ServerOptions(), name=MOUNT_NAME)
    with mount:
        env = {
            "LAB_FUSE_MOUNT": mount.path,
            "LAB_FUSE_BACKING": mount.backing,
            "LAB_VARIANT": variant,
            "LAB_FEATURES": ",".join(ctx.features),
            "LAB_TIMEOUT_S": f"{limit:.0f}",
        }
        run = run_in_guest(guest, script, env, limit)
        cleanup = _unmount(mount)
    if cleanup:
        run = ScriptRun(run.exit_status, run.stdout, run.stderr, run.duration_s, run.limit_s,
                        run.blocked_tasks, run.stdout_truncated, cleanup)
    return judge(script.identity, run)


def _unmount(mount: FuseMount) -> str:
    """Unmount; a server the script left unable to exit (stopped, or its mount
    still busy) is killed, so the next check starts clean."""
    # A script may have stopped the server (SIGSTOP): it must run to exit.
    mount.guest.run(f"[ -s {mount.pidfile} ] && kill -CONT $(cat {mount.pidfile}); true",
                    timeout=30)
    try:
        mount.unmount()
        return ""
    except GuestError:
        with contextlib.suppress(GuestError):
            mount.guest.run(f"kill -KILL $(cat {mount.pidfile}); umount -l {mount.path}; "
                            f"rm -f {mount.pidfile}", timeout=30)
        return "labfs did not exit after the script and was killed"


def cases(scripts: Sequence[Script], variant: str, timeout_s: float) -> list[Case]:
    """One suite Case per script for `variant`: they run, shard, repeat and
    report like the suite's own cases, kernel-report check included."""
    return [
        Case(FIRST_NUMBER + i, s.check_name, f"user script {s.path}",
             lambda ctx, s=s: observe(ctx, s, variant, timeout_s),
             budget_s=timeout_s + SETUP_BUDGET_S, alone=True, kind=CheckKind.SCRIPT)
        for i, s in enumerate(scripts)
    ]


def items(paths: Sequence[str], variants: Iterable[str], timeout_s: float
          ) -> list[tuple[str, Case]]:
    """(variant, case) items for the jobs, from configured script paths."""
    chosen = resolve(paths, "[tests] scripts")
    return [(v, c) for v in variants for c in cases(chosen, v, timeout_s)]
