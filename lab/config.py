"""lab.toml and command-line defaults, as one typed, validated value.

Every key is optional; an unknown key or a wrong type is a ConfigError that
names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lab import cache
from lab.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class VmConfig:
    vcpus: int = 2
    memory_mib: int = 1024
    accel: str = "auto"  # auto | kvm | tcg
    boot_timeout_s: float = 60.0  # before the accelerator's scale factor

    def validate(self, where: str) -> None:
        if self.accel not in ("auto", "kvm", "tcg"):
            raise ConfigError(f"{where}.accel: must be auto, kvm or tcg, not {self.accel!r}")
        if not 1 <= self.vcpus <= 64:
            raise ConfigError(f"{where}.vcpus: must be 1..64, not {self.vcpus}")
        if self.memory_mib < 256:
            raise ConfigError(f"{where}.memory_mib: at least 256, not {self.memory_mib}")


# The default widths per server mode: the cover letter's whole range where the
# server sets the pace (latency), and in null mode only what two vCPUs can
# show (beyond 8 writers they measure the CPUs, not the lock).
JOBS_BY_MODE = {"latency": (1, 2, 4, 8, 16, 32), "null": (1, 2, 4, 8)}


@dataclass(frozen=True)
class BenchConfig:
    """The built-in default experiment, sized for a 2-core host under TCG."""

    workloads: tuple[str, ...] = ("ssf-presized", "ssf", "fpj")
    jobs: tuple[int, ...] = ()  # set: these widths in every mode; empty: JOBS_BY_MODE
    modes: tuple[str, ...] = ("latency", "null")
    repeat: int = 3
    size_mib: int = 64  # per fio run: the shared file, or each job's file
    runtime_s: int = 2
    write_delay_us: int = 20000  # latency mode: a slow backend
    concurrency_writers: int = 8
    job_file: str = ""  # a user's fio job file instead of the built-in workloads

    def jobs_for(self, mode: str) -> tuple[int, ...]:
        """The numjobs widths swept in `mode`."""
        return self.jobs or JOBS_BY_MODE[mode]

    def validate(self, where: str) -> None:
        if self.job_file and not Path(self.job_file).is_file():
            raise ConfigError(f"{where}.job_file: {self.job_file} does not exist")
        bad = set(self.workloads) - {"ssf", "ssf-presized", "fpj", "custom"}
        if bad:
            raise ConfigError(f"{where}.workloads: unknown {sorted(bad)} (ssf, ssf-presized, fpj)")
        bad = set(self.modes) - {"null", "latency"}
        if bad:
            raise ConfigError(f"{where}.modes: unknown {sorted(bad)} (null, latency)")
        if any(j < 1 or j > 256 for j in self.jobs):
            raise ConfigError(f"{where}.jobs: each must be 1..256")
        if self.repeat < 1:
            raise ConfigError(f"{where}.repeat: at least 1")


@dataclass(frozen=True)
class TestsConfig:
    """The user's own test scripts (lab/scripts.py), run on every variant."""

    __test__ = False  # a config section, not a pytest class

    scripts: tuple[str, ...] = ()  # paths, relative to lab.toml
    script_timeout_s: float = 300.0  # per script, KVM-scale

    def validate(self, where: str) -> None:
        if self.script_timeout_s <= 0:
            raise ConfigError(f"{where}.script_timeout_s: must be positive")


@dataclass(frozen=True)
class LabConfig:
    series: Path = REPO_ROOT / "patches" / "fuse-parallel-dio"
    fragments: tuple[Path, ...] = (REPO_ROOT / "kernels" / "guest.config",)
    debug_fragment: Path = REPO_ROOT / "kernels" / "debug.config"
    image_recipe: Path = REPO_ROOT / "images"
    cache_root: Path = field(default_factory=cache.default_root)
    results_root: Path = REPO_ROOT / "results"
    vm: VmConfig = VmConfig()
    bench: BenchConfig = BenchConfig()
    tests: TestsConfig = TestsConfig()


def _typed(section: str, cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"[{section}] unknown key `{key}` (known: {', '.join(known)})")
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"[{section}] `{key}` must be a list")
            values[key] = tuple(value)
        else:
            # TOML ints are fine where a float is expected; bools are not ints here.
            ok = type(value) is type(default) or (
                isinstance(default, float) and type(value) is int)
            if not ok:
                raise ConfigError(
                    f"[{section}] `{key}` must be {type(default).__name__}, not {value!r}"
                )
            values[key] = value
    obj = cls(**values)
    obj.validate(section)
    return obj


def load(path: Path | None) -> LabConfig:
    """Read `path` (or `lab.toml` in the repo if present) over the defaults."""
    cfg = LabConfig()
    if path is None:
        path = REPO_ROOT / "lab.toml"
        if not path.exists():
            return cfg
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.parent
    for section in data:
        if section not in ("lab", "vm", "bench", "tests"):
            raise ConfigError(f"{path}: unknown section [{section}] (lab, vm, bench, tests)")
    lab = data.get("lab", {})
    changes: dict[str, Any] = {}
    for key, value in lab.items():
        if key in ("series", "debug_fragment", "image_recipe", "cache_root", "results_root"):
            changes[key] = (base / str(value)).resolve()
        elif key == "fragments":
            changes[key] = tuple((base / str(v)).resolve() for v in value)
        else:
            raise ConfigError(f"{path}: [lab] unknown key `{key}`")
    if "vm" in data:
        changes["vm"] = _typed("vm", VmConfig, data["vm"])
    if "bench" in data:
        changes["bench"] = _typed("bench", BenchConfig, data["bench"])
    if "tests" in data:
        tests = _typed("tests", TestsConfig, data["tests"])
        changes["tests"] = replace(tests, scripts=tuple(
            str((base / str(s)).resolve()) for s in tests.scripts))
    return replace(cfg, **changes)
