"""Cached verdicts: a variant's check results, keyed by everything that decides them.

The key covers the kernel build, the root image, the guest programs, the
code of the suite and its runner, the cases and their order, the user's
scripts, the repeat count, how many cases run together and the accelerator.
An unchanged `baseline` is then not booted and checked again when only the patch under test changed;
`--fresh` runs everything regardless.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from lab import (
    cache,
    checks,
    console,
    features,
    fsx,
    guest,
    guestdata,
    ktap,
    machine,
    scripts,
    suite,
    together,
    workloads,
)
from lab.config import LabConfig
from lab.pipeline import Prepared
from lab.results import CheckResult

# Code whose change can change a verdict.
_CODE = (suite, checks, workloads, guestdata, guest, machine, console, features, fsx, ktap,
         scripts, together)
VERSION = "2"  # 2: the variant's claimed features are part of the key


def key(cfg: LabConfig, p: Prepared, variant: str, cases: Sequence[suite.Case],
        repeat: int) -> str:
    build = p.builds[variant]
    scripts = [Path(s).read_bytes() for s in cfg.tests.scripts if Path(s).is_file()]
    return cache.digest([
        # The claims decide what each case expects; they are not in the build key.
        VERSION, build.key, json.dumps(list(build.features)), p.image.key,
        workloads.sources_key(p.image.key), p.accel.name,
        json.dumps(dataclasses.asdict(cfg.vm), default=str),
        *(Path(m.__file__).read_bytes() for m in _CODE), *scripts,
        json.dumps([c.name for c in cases]), str(repeat), str(cfg.tests.script_timeout_s),
        str(cfg.tests.lanes),
    ])


def _path(cache_root: Path, k: str) -> Path:
    return cache_root / "verdicts" / f"{k[:32]}.json"


def load(cache_root: Path, k: str) -> list[CheckResult] | None:
    path = _path(cache_root, k)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return [dataclasses.replace(c, details={**c.details, "cached_from": data["run_id"]})
                for c in map(CheckResult.from_dict, data["checks"])]
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable entry is a miss, never a verdict


def save(cache_root: Path, k: str, run_id: str, results: Sequence[CheckResult]) -> None:
    cache.write_json(_path(cache_root, k),
                     {"run_id": run_id, "checks": [r.to_dict() for r in results]})
