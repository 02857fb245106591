"""What runs inside a guest: our FUSE server, the probes, fio.

The C sources in lab/guest/programs/ are compiled in the guest against its own
libfuse at first use, and the binaries are cached on the host by the hash of
the sources and the image, so later VMs only copy them in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import GuestError, GuestProgramFailed
from lab.guest.records import FileCounters, ServerStats, load_json, parse_server_stats
from lab.host import cache
from lab.vm.ssh import Guest

GUEST_SRC = Path(__file__).resolve().parent / "programs"
SOURCES = ("Makefile", "labfs.c", "labprobe.c", "labfsx.c", "labcommon.h")
REMOTE = "/opt/lab"
BINARIES = ("labfs", "labprobe", "labfsx")


@dataclass(frozen=True)
class ServerOptions:
    """labfs's command line; defaults are the benchmark's server."""

    direct_io: bool = True
    parallel_direct_writes: bool = True
    null_writes: bool = False
    delay_write_us: int = 0
    delay_setattr_us: int = 0
    short_write: int = 0
    fail_write_every: int = 0
    fail_write_errno: str = "EIO"
    threads: int = 64
    attr_timeout_s: int = 1
    cached_readers: bool = False  # read-only opens in caching mode (inode I/O modes)
    # libfuse's default; off, a changed mtime no longer drops the page cache,
    # so only the kernel's own invalidation keeps cached readers right.
    auto_inval_data: bool = True
    # Count the WRITEs received in FuseMount.arrivals (labprobe --gate waits on it);
    # off for the benchmark, whose server does nothing per WRITE but the WRITE.
    arrivals: bool = False
    # Writeback caching (off: it would route cached writes around the path
    # under test); on only where a case asks what the kernel does then.
    writeback_cache: bool = False
    # Answer O_TRUNC opens this late, in caching mode, counted in the arrivals.
    hold_trunc_open_us: int = 0

    def argv(self) -> list[str]:
        onoff = {True: "on", False: "off"}
        args = [f"--direct-io={onoff[self.direct_io]}",
                f"--parallel-direct-writes={onoff[self.parallel_direct_writes]}",
                f"--threads={self.threads}", f"--attr-timeout={self.attr_timeout_s}"]
        if self.null_writes:
            args.append("--null-writes")
        if self.cached_readers:
            args.append("--cached-readers")
        if not self.auto_inval_data:
            args.append("--auto-inval-data=off")
        if self.writeback_cache:
            args.append("--writeback-cache")
        if self.hold_trunc_open_us:
            args.append(f"--hold-trunc-open-us={self.hold_trunc_open_us}")
        if self.delay_write_us:
            args.append(f"--delay-write-us={self.delay_write_us}")
        if self.delay_setattr_us:
            args.append(f"--delay-setattr-us={self.delay_setattr_us}")
        if self.short_write:
            args.append(f"--short-write={self.short_write}")
        if self.fail_write_every:
            args += [f"--fail-write-every={self.fail_write_every}",
                     f"--fail-write-errno={self.fail_write_errno}"]
        return args


def sources_key(image_key: str) -> str:
    return cache.digest([image_key, *((GUEST_SRC / f).read_bytes() for f in SOURCES)])


def deploy(guest: Guest, cache_root: Path) -> None:
    """Put labfs and labprobe into the guest, compiling them there once."""
    key = sources_key(guest.image.key)
    art = cache_root / "guest-bin" / key[:24]
    guest.run(["mkdir", "-p", f"{REMOTE}/bin", f"{REMOTE}/src"], check=True)
    if all((art / b).is_file() for b in BINARIES):
        for b in BINARIES:
            guest.put(art / b, f"{REMOTE}/bin/{b}")
        guest.run(["chmod", "755", *(f"{REMOTE}/bin/{b}" for b in BINARIES)], check=True)
        return
    for f in SOURCES:
        guest.put(GUEST_SRC / f, f"{REMOTE}/src/{f}")
    result = guest.run(["make", "-C", f"{REMOTE}/src", "all"], timeout=120)
    if not result.ok:
        raise GuestError("compiling the guest programs failed", excerpt=result.tail())
    guest.run(["cp", *(f"{REMOTE}/src/{b}" for b in BINARIES), f"{REMOTE}/bin/"], check=True)
    with cache.locked(cache_root / "locks" / "guest-bin.lock"):
        staging = art.with_name(art.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        for b in BINARIES:
            guest.get(f"{REMOTE}/bin/{b}", staging / b)
        cache.publish_dir(staging, art)


def mount_point(name: str) -> str:
    """Where FuseMount(name=...) mounts labfs in the guest."""
    return f"/mnt/{name}"


class FuseMount:
    """labfs mounted in the guest; the counters are read at unmount.

    Use as `with FuseMount(guest, options) as m:`; `m.path` is the mount
    point, `m.stats` the server's counters once the block is left.
    """

    def __init__(self, guest: Guest, options: ServerOptions, name: str = "lab") -> None:
        self.guest = guest
        self.options = options
        self.backing = f"/var/lab/{name}-backing"
        self.path = mount_point(name)
        self.stats_path = f"/run/lab-{name}.json"
        self.pidfile = f"/run/lab-{name}.pid"
        # labfs counts the WRITEs it received here (labprobe --gate waits on it).
        self.arrivals = f"/run/lab-{name}.arrivals"
        self.stats: ServerStats | None = None

    def __enter__(self) -> FuseMount:
        g = self.guest
        g.run(f"rm -rf {self.backing} {self.stats_path}; mkdir -p {self.backing} {self.path}",
              check=True)
        argv = [f"{REMOTE}/bin/labfs", *self.options.argv(), f"--stats={self.stats_path}",
                f"--pidfile={self.pidfile}",
                *([f"--arrivals={self.arrivals}"] if self.options.arrivals else []),
                self.backing, self.path]
        result = g.run(argv, timeout=30)
        if not result.ok:
            raise GuestError("labfs did not mount", excerpt=result.tail())
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        # On the way out of a failure the guest may be stuck on this very
        # mount (a deadlocked writer): touching it could block for minutes.
        # The VM is thrown away after a failed case, mount and all.
        if exc_type is None:
            self.unmount()

    def pid(self) -> int:
        return int(self.guest.run(["cat", self.pidfile], check=True).stdout.strip())

    def unmount(self) -> None:
        """Unmount and read the counters the server wrote on its way out.

        labfs removes its pidfile only after the final dump, so the counters
        are read once the pidfile is gone; a server that does not exit is an
        error, never stale numbers.
        """
        g = self.guest
        if not g.run(["mountpoint", "-q", self.path]).ok:
            return
        g.run(f"fusermount3 -u {self.path} || umount -l {self.path}", timeout=60)
        wait = (f"for i in $(seq 300); do [ -e {self.pidfile} ] || exit 0; sleep 0.1; done; "
                "exit 1")
        if not g.run(wait, timeout=60).ok:
            raise GuestError(f"labfs on {self.path} did not exit after unmount; "
                             "its counters would be stale")
        out = g.run(["cat", self.stats_path], timeout=30, check=True)
        self.stats = parse_server_stats(out.stdout)

    def snapshot_lines(self) -> list[str]:
        """Shell lines that make the server rewrite its counters now (SIGUSR1: a
        new file renamed over the old one) and wait until it has. Builtins only:
        under TCG each program started costs tens of milliseconds."""
        stats = shlex.quote(self.stats_path)
        return [f": > {stats}", f"read -r pid < {shlex.quote(self.pidfile)}",
                'kill -USR1 "$pid"',
                f"i=0; while [ ! -s {stats} ] && [ $i -lt 100000 ]; do i=$((i + 1)); done"]

    def snapshot(self) -> ServerStats:
        """The counters now, without unmounting (SIGUSR1)."""
        script = "; ".join([*self.snapshot_lines(), f"cat {shlex.quote(self.stats_path)}"])
        out = self.guest.run(script, timeout=30, check=True)
        return parse_server_stats(out.stdout)

    def file_stats(self, name: str) -> FileCounters:
        """The counters of one file, read at unmount."""
        if self.stats is None:
            raise GuestError(f"labfs on {self.path}: counters read before the unmount")
        return self.stats.file(name)


EXIT_USAGE = 2  # our guest programs' "you called me wrong": a lab bug


def probe_argv(subcommand: str, **options: Any) -> list[str]:
    """labprobe's command line; options become --name=value (True -> --name)."""
    argv = [f"{REMOTE}/bin/labprobe", subcommand]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv.append(f"{flag}={value}")
    return argv


def probe(guest: Guest, subcommand: str, timeout: float = 120, **options: Any) -> Any:
    """Run labprobe and return its JSON (options: probe_argv).

    labprobe exits 1 when a system call it relies on fails unexpectedly: the
    kernel under test misbehaved (GuestProgramFailed, a verdict on the kernel).
    Exit 2 is a usage error: the lab called it wrong.
    """
    result = guest.run(probe_argv(subcommand, **options), timeout=timeout)
    if result.exit_status == EXIT_USAGE or result.exit_status not in (0, 1):
        raise GuestError(f"labprobe {subcommand} failed (exit {result.exit_status})",
                         excerpt=result.tail())
    if result.exit_status == 1:
        raise GuestProgramFailed(f"labprobe {subcommand}: {result.stderr.strip()[:300]}",
                                 excerpt=result.tail())
    return load_json(result.stdout, f"labprobe {subcommand}")
