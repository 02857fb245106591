"""lab.toml and command-line defaults, as one typed, validated value.

Every key is optional. The file is validated in one pass by pydantic (strict
types: no "4" for 4, no true for 1, no string for a list), with ranges on
every number (no nan, no infinity, no zero where a count is needed); every
problem is reported with its section and key, as bad input (exit 2).
The values themselves stay plain frozen dataclasses.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as _Invalid

from lab.errors import ConfigError
from lab.host import cache

REPO_ROOT = Path(__file__).resolve().parent.parent
# An installed lab (pip, pipx, uv tool) carries the repository's patches/,
# kernels/ and images/ as package data here (pyproject.toml maps them); a
# checkout or an editable install reads them where they are.
SHIPPED = Path(__file__).resolve().parent / "shipped"
DATA_ROOT = SHIPPED if SHIPPED.is_dir() else REPO_ROOT
CONFIG_NAME = "lab.toml"

_SECTION = ConfigDict(extra="forbid")  # pydantic's settings for every section
Count = Annotated[StrictInt, Field(ge=1)]
Seconds = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]


@dataclass(frozen=True)
class VmConfig:
    __pydantic_config__ = _SECTION

    vcpus: Annotated[StrictInt, Field(ge=1, le=64)] = 2
    memory_mib: Annotated[StrictInt, Field(ge=256, le=1 << 20)] = 1024
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    boot_timeout_s: Seconds = 60.0  # before the accelerator's scale factor
    # QEMU machine type (lab/vm/machine.py): pc, or microvm (no PCI, no legacy
    # devices; KVM only).
    machine: Literal["pc", "microvm"] = "pc"

    def validate(self, where: str) -> None:
        _check(type(self), self, where)


# The default widths per server mode: the cover letter's whole range where the
# server sets the pace (latency), and in null mode only what two vCPUs can
# show (beyond 8 writers they measure the CPUs, not the lock).
JOBS_BY_MODE = {"latency": (1, 2, 4, 8, 16, 32), "null": (1, 2, 4, 8)}


@dataclass(frozen=True)
class BenchConfig:
    """The built-in default experiment, sized for a 2-core host under TCG."""

    __pydantic_config__ = _SECTION

    workloads: tuple[Literal["ssf", "ssf-presized", "fpj", "custom"], ...] = (
        "ssf-presized", "ssf", "fpj")
    # set: these widths in every mode; empty: JOBS_BY_MODE
    jobs: tuple[Annotated[StrictInt, Field(ge=1, le=256)], ...] = ()
    modes: tuple[Literal["latency", "null"], ...] = ("latency", "null")
    repeat: Count = 3
    size_mib: Count = 64  # per fio run: the shared file, or each job's file
    runtime_s: Count = 2
    write_delay_us: Annotated[StrictInt, Field(ge=0)] = 20000  # latency mode: a slow backend
    concurrency_writers: Count = 8
    job_file: StrictStr = ""  # a user's fio job file instead of the built-in workloads

    def jobs_for(self, mode: str) -> tuple[int, ...]:
        """The numjobs widths swept in `mode`."""
        return self.jobs or JOBS_BY_MODE[mode]

    def validate(self, where: str) -> None:
        _check(type(self), self, where)
        if not self.modes:
            raise ConfigError(f"{where} modes: at least one mode")
        if not self.workloads:
            raise ConfigError(f"{where} workloads: at least one workload")
        if self.job_file and not Path(self.job_file).is_file():
            raise ConfigError(f"{where} job_file: {self.job_file} does not exist")


@dataclass(frozen=True)
class TestsConfig:
    """How the suite runs: the user's own test scripts (lab/suite/scripts.py), run on
    every variant, and how many cases run together in one guest."""

    __test__ = False  # a config section, not a pytest class
    __pydantic_config__ = _SECTION

    scripts: tuple[StrictStr, ...] = ()  # paths, relative to lab.toml
    script_timeout_s: Seconds = 300.0  # per script, KVM-scale
    # Independent suite cases run this many at a time in one guest
    # (lab.suite.together); 1 runs them one by one.
    lanes: Annotated[StrictInt, Field(ge=1, le=16)] = 4
    # With --repeat: a case failing at least this fraction of its runs fails;
    # below it the case is flaky (lab.verdict.FlakePolicy).
    flake_threshold: Annotated[StrictFloat, Field(gt=0.0, le=1.0)] = 0.5
    # The tree's own tests (lab/kernel/kselftest.py, lab/kernel/kunit.py): kselftest
    # targets, built from each variant's source and run in its guest, and a
    # glob of KUnit suites, built in and run as the kernel boots.
    # After the kernel crashed or hung the same way in this many cases, the
    # cases left are not run (each would cost a VM and a hung-task timeout to
    # say the same); keep_going runs them all.
    stop_after_same_failures: Annotated[StrictInt, Field(ge=1)] = 3
    keep_going: StrictBool = False
    kselftests: tuple[StrictStr, ...] = ()
    kunit: StrictStr = ""
    kunitconfig: StrictStr = ""  # a fragment instead of the options found from the glob

    def validate(self, where: str) -> None:
        _check(type(self), self, where)
        for script in self.scripts:
            if not Path(script).is_file():
                raise ConfigError(f"{where} scripts: {script} does not exist")
        if self.kunitconfig and not Path(self.kunitconfig).is_file():
            raise ConfigError(f"{where} kunitconfig: {self.kunitconfig} does not exist")


@dataclass(frozen=True)
class LabConfig:
    series: Path = DATA_ROOT / "patches" / "fuse-parallel-dio"
    fragments: tuple[Path, ...] = (DATA_ROOT / "kernels" / "guest.config",)
    debug_fragment: Path = DATA_ROOT / "kernels" / "debug.config"
    image_recipe: Path = DATA_ROOT / "images"
    cache_root: Path = field(default_factory=cache.default_root)
    # Results land where the lab is run from, like a build's output.
    results_root: Path = field(default_factory=lambda: Path.cwd() / "results")
    vm: VmConfig = VmConfig()
    bench: BenchConfig = BenchConfig()
    tests: TestsConfig = TestsConfig()


class _LabSection(BaseModel):
    """[lab]: paths, relative to the file."""

    model_config = ConfigDict(extra="forbid")

    series: StrictStr | None = None
    fragments: tuple[StrictStr, ...] | None = None
    debug_fragment: StrictStr | None = None
    image_recipe: StrictStr | None = None
    cache_root: StrictStr | None = None
    results_root: StrictStr | None = None


class _File(BaseModel):
    # Not strict as a whole: a section arrives as a table, not as an instance;
    # each field is strict by its own type.
    model_config = ConfigDict(extra="forbid")

    lab: _LabSection = _LabSection()
    vm: VmConfig = VmConfig()
    bench: BenchConfig = BenchConfig()
    tests: TestsConfig = TestsConfig()


_SECTION_OF = {VmConfig: "vm", BenchConfig: "bench", TestsConfig: "tests"}
_KNOWN = {"lab": tuple(_LabSection.model_fields),
          **{name: tuple(f.name for f in fields(cls)) for cls, name in _SECTION_OF.items()}}
_BOUNDS = {"greater_than": "more than", "greater_than_equal": "at least",
           "less_than": "less than", "less_than_equal": "at most"}
_NAMES = {"int_type": "an integer", "float_type": "a number", "string_type": "a string",
          "tuple_type": "a list", "dataclass_type": "a table", "model_type": "a table",
          "bool_type": "true or false"}


def _problem(err: dict[str, Any], where: str) -> str:
    """One pydantic error as `[section] key: what is wrong, not VALUE`."""
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        if len(loc) == 1:
            return f"{where}unknown section [{loc[0]}] (lab, vm, bench, tests)"
        known = ", ".join(_KNOWN.get(loc[0], ()))
        return f"{where}[{loc[0]}] unknown key `{loc[-1]}` (known: {known})"
    section = f"[{loc[0]}]" if loc else ""
    key = "".join(f"[{p}]" if p.isdigit() else f" {p}" for p in loc[1:])
    if kind in _NAMES:
        what = f"must be {_NAMES[kind]}"
    elif kind == "greater_than" and err["ctx"].get("gt") == 0:
        what = "must be positive"
    elif kind in _BOUNDS:
        what = f"must be {_BOUNDS[kind]} {next(iter(err['ctx'].values()))}"
    elif kind == "literal_error":
        what = f"must be one of {err['ctx']['expected']}"
    elif kind == "finite_number":
        what = "must be a finite number"
    else:
        what = err["msg"][0].lower() + err["msg"][1:]
    return f"{where}{section}{key}: {what}, not {err['input']!r}"


def _raise(exc: _Invalid, where: str) -> None:
    problems = [_problem(e, where) for e in exc.errors()]
    raise ConfigError("\n".join(dict.fromkeys(problems))) from None


def _check(cls: type, obj: Any, where: str) -> None:
    """Validate a section built in code (command-line values) like the file's."""
    raw = {f.name: getattr(obj, f.name) for f in fields(cls)}
    try:
        _File.model_validate({_SECTION_OF[cls]: raw})
    except _Invalid as exc:
        _raise(exc, f"{where}: ")


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kernel-lab" / CONFIG_NAME


def default_config_path() -> Path | None:
    """./lab.toml in the working directory, else the user's, else none."""
    for candidate in (Path.cwd() / CONFIG_NAME, user_config_path()):
        if candidate.is_file():
            return candidate
    return None


def load(path: Path | None) -> LabConfig:
    """Read `path` (or ./lab.toml, then ~/.config/kernel-lab/lab.toml) over the defaults."""
    cfg = LabConfig()
    if path is None:
        path = default_config_path()
        if path is None:
            return cfg
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        parsed = _File.model_validate(data)
    except _Invalid as exc:
        _raise(exc, f"{path}: ")
    base = path.parent
    changes: dict[str, Any] = {}
    for key, value in parsed.lab.model_dump(exclude_none=True).items():
        if key == "fragments":
            changes[key] = tuple((base / v).resolve() for v in value)
        else:
            changes[key] = (base / value).resolve()
    present = set(data)
    if "vm" in present:
        changes["vm"] = parsed.vm
    if "bench" in present:
        bench = parsed.bench
        if bench.job_file:
            bench = replace(bench, job_file=str((base / bench.job_file).resolve()))
        bench.validate(f"{path}: [bench]")
        changes["bench"] = bench
    if "tests" in present:
        tests = replace(parsed.tests, scripts=tuple(
            str((base / s).resolve()) for s in parsed.tests.scripts),
            kunitconfig=str((base / parsed.tests.kunitconfig).resolve())
            if parsed.tests.kunitconfig else "")
        tests.validate(f"{path}: [tests]")
        changes["tests"] = tests
    return replace(cfg, **changes)
