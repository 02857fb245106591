"""Cached verdicts: a variant's check results, keyed by everything that decides them.

The key covers the kernel build and what the variant claims, the root image,
the guest programs, every file of the lab's own package (found by walking it:
a hand-kept list of "code that matters" drifts), the cases and their order,
the user's scripts, the repeat count, how many cases run together and the
accelerator. An unchanged `baseline` is then not booted and checked again
when only the patch under test changed; `--fresh` runs everything regardless.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import lab
from lab.config import LabConfig
from lab.errors import ConfigError
from lab.guest import workloads
from lab.host import cache
from lab.kernel.build import KernelBuild
from lab.results import CheckResult
from lab.suite.spec import Case

VERSION = "3"  # 3: the whole package's files by content


@functools.cache
def code_digest(root: Path | None = None) -> str:
    """Every file of the lab package by path and content (guest programs included)."""
    top = root or Path(lab.__file__).resolve().parent
    files = sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in (".pyc", ".o") and not p.name.startswith("."))
    return cache.digest([f"{p.relative_to(top)}\0".encode() + p.read_bytes() for p in files])


def key(cfg: LabConfig, build: KernelBuild, image_key: str, accel: str,
        cases: Sequence[Case], repeat: int, tests_key: str = "") -> str:
    """`tests_key`: the tree's own tests built for this variant (kselftest)."""
    scripts = [Path(s).read_bytes() for s in cfg.tests.scripts if Path(s).is_file()]
    return cache.digest([
        # The claims decide what each case expects; they are not in the build key.
        VERSION, build.key, json.dumps(list(build.features)), image_key,
        workloads.sources_key(image_key), accel, code_digest(),
        json.dumps(dataclasses.asdict(cfg.vm), default=str), *scripts,
        json.dumps([c.name for c in cases]), str(repeat), str(cfg.tests.script_timeout_s),
        str(cfg.tests.lanes), tests_key,
        f"{cfg.tests.keep_going}/{cfg.tests.stop_after_same_failures}",
    ])


def _path(cache_root: Path, k: str) -> Path:
    return cache_root / "verdicts" / f"{k[:32]}.json"


def load(cache_root: Path, k: str) -> list[CheckResult] | None:
    path = _path(cache_root, k)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return [dataclasses.replace(c, cached_from=str(data["run_id"]))
                for c in map(CheckResult.from_dict, data["checks"])]
    except (ValueError, KeyError, TypeError, ConfigError):
        return None  # an unreadable entry is a miss, never a verdict


def save(cache_root: Path, k: str, run_id: str, results: Sequence[CheckResult]) -> None:
    cache.write_json(_path(cache_root, k),
                     {"run_id": run_id, "checks": [r.to_dict() for r in results]})
