"""A user's fio job file, made to run on the lab's FUSE mount. Pure: no processes.

fio reads `[section]` headers, `key=value` or bare `key` lines and `;`/`#`
comments; `[global]` sections set defaults for the jobs after them. A job file
that names its own paths (the cover letter's say `directory=/tmp/dest`) runs
wherever they point: fio's `--directory` on the command line is only a
default. So the lab rewrites a copy: every absolute `directory=`, `opendir=`,
`filename=` or `filename_format=` path outside the mount is moved under it,
mirrored (`/tmp/dest` -> `<mount>/tmp/dest`, so two different paths stay
two different paths), and fio runs with the mount as its working directory,
which puts relative paths there too. `numjobs` is set per sweep point, as the
cover letter swept it. Every change is recorded, for the report.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace

from lab.errors import ConfigError

PATH_KEYS = ("directory", "opendir", "filename", "filename_format")
# Keys whose values are folders fio expects to exist; for the others the
# folder above the file must exist.
DIR_KEYS = ("directory", "opendir")
# fio separates several paths with ':' and escapes a literal one as '\:'.
_PATH_SEP = re.compile(r"(?<!\\):")
_SECTION = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class Option:
    key: str
    value: str | None  # None: a bare flag such as `stonewall`
    line: int = 0

    def render(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class Section:
    name: str
    options: tuple[Option, ...]

    @property
    def is_global(self) -> bool:
        return self.name == "global"

    def get(self, key: str) -> str | None:
        """The value the section sets last for `key` ('' for a bare flag), else None."""
        found = None
        for opt in self.options:
            if opt.key == key:
                found = "" if opt.value is None else opt.value
        return found


@dataclass(frozen=True)
class Change:
    """One thing the lab changed in the user's file, said in its terms."""

    section: str
    key: str
    old: str | None  # None: the file did not set it
    new: str | None  # None: removed

    def describe(self) -> str:
        if self.old is None:
            return f"[{self.section}] {self.key}={self.new} added"
        if self.new is None:
            return f"[{self.section}] {self.key}={self.old} removed"
        return f"[{self.section}] {self.key}={self.old} -> {self.new}"


@dataclass(frozen=True)
class JobFile:
    source: str  # where it came from, for messages
    sections: tuple[Section, ...]

    @property
    def jobs(self) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if not s.is_global)

    def render(self, header: tuple[str, ...] = ()) -> str:
        out = [f"; {line}" for line in header]
        for section in self.sections:
            if out:
                out.append("")
            out.append(f"[{section.name}]")
            out += [opt.render() for opt in section.options]
        return "\n".join(out) + "\n"


def parse(text: str, source: str) -> JobFile:
    """Parse a job file; a line fio would reject for its shape is a ConfigError
    naming the file and line (fio's own --parse-only judges the options)."""
    sections: list[Section] = []
    name: str | None = None
    options: list[Option] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        header = _SECTION.fullmatch(line)
        if header:
            if name is not None:
                sections.append(Section(name, tuple(options)))
            name, options = header.group(1).strip(), []
            continue
        if line.startswith("include ") or line.startswith("include\t"):
            raise ConfigError(f"{source}:{number}: `include` is not supported; "
                              "paste the included file's options into the job file")
        if name is None:
            raise ConfigError(f"{source}:{number}: option {line!r} before any [section]")
        key, sep, value = line.partition("=")
        key = key.strip()
        if not key or not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ConfigError(f"{source}:{number}: not an fio option: {line!r}")
        options.append(Option(key, value.strip() if sep else None, number))
    if name is not None:
        sections.append(Section(name, tuple(options)))
    job = JobFile(source, tuple(sections))
    if not job.jobs:
        raise ConfigError(f"{source}: no job section (only [global] or nothing)")
    return job


def _inside(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _move(path: str, mount: str) -> str:
    """An absolute path outside `mount`, mirrored under it; others unchanged."""
    if not path.startswith("/") or _inside(posixpath.normpath(path), mount):
        return path
    return posixpath.join(mount, posixpath.normpath(path).lstrip("/"))


def _folders(key: str, value: str, mount: str) -> list[str]:
    """The folders fio needs to exist for this (already redirected) value."""
    out = []
    for part in _PATH_SEP.split(value):
        folder = part if key in DIR_KEYS else posixpath.dirname(part)
        # fio expands $jobname, %s and the like per job: such a folder cannot
        # be made in advance.
        if folder and "$" not in folder and "%" not in folder:
            folder = posixpath.normpath(posixpath.join(mount, folder))
            if _inside(folder, mount) and folder != mount:
                out.append(folder)
    return out


@dataclass(frozen=True)
class Redirected:
    job: JobFile
    changes: tuple[Change, ...]
    folders: tuple[str, ...]  # to create (mkdir -p) on the mount before fio runs


def redirect(job: JobFile, mount: str) -> Redirected:
    """Move every path the file names onto `mount` (fio runs with it as cwd)."""
    mount = posixpath.normpath(mount)
    sections = []
    changes: list[Change] = []
    folders: list[str] = []
    for section in job.sections:
        options = []
        for opt in section.options:
            if opt.key in PATH_KEYS and opt.value:
                parts = _PATH_SEP.split(opt.value)
                new = ":".join(_move(p, mount) for p in parts)
                if new != opt.value:
                    changes.append(Change(section.name, opt.key, opt.value, new))
                    opt = replace(opt, value=new)
                folders += _folders(opt.key, opt.value, mount)
            options.append(opt)
        sections.append(Section(section.name, tuple(options)))
    return Redirected(JobFile(job.source, tuple(sections)), tuple(changes),
                      tuple(dict.fromkeys(folders)))


def with_numjobs(job: JobFile, numjobs: int) -> tuple[JobFile, tuple[Change, ...]]:
    """Every job runs `numjobs` clones: what the file set is replaced."""
    if numjobs < 1:
        raise ConfigError(f"numjobs must be >= 1, not {numjobs}")
    sections = []
    changes = []
    for section in job.sections:
        old = section.get("numjobs")
        kept = tuple(o for o in section.options if o.key != "numjobs")
        if section.is_global:
            if old is not None:
                changes.append(Change(section.name, "numjobs", old, None))
            sections.append(Section(section.name, kept))
            continue
        new = Option("numjobs", str(numjobs))
        if old != new.value:
            changes.append(Change(section.name, "numjobs", old, new.value))
        sections.append(Section(section.name, (*kept, new)))
    return JobFile(job.source, tuple(sections)), tuple(changes)


def for_point(job: JobFile, mount: str, numjobs: int) -> Redirected:
    """What the guest runs for one sweep point, with every change made to get there."""
    moved = redirect(job, mount)
    swept, numjob_changes = with_numjobs(moved.job, numjobs)
    return Redirected(swept, moved.changes + numjob_changes, moved.folders)
