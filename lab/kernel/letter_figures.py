"""The figures a series' cover letter states, as data of the series.

A series folder may hold `cover-letter-figures.toml`: what the series' own
cover letter measured (raw bandwidths per workload and job count, the gains
it states, how it measured), so that a report can set the lab's numbers
beside them. A series without the file has none, and its reports have no
"original" column or paragraph. A run records the figures in its results
(inputs["cover_letter"], from Series.report_inputs), so a report made later
from results.json alone shows the same thing; `to_dict`/`from_dict` are that
record.

The file (every list is per entry of `jobs`):

    title = "..."        # the report's heading for the table
    about = "..."        # a paragraph under it
    setup = "..."        # "The cover letter measured on <setup>: ..."
    curves = "..."       # what the gain plot shows of it (a sentence or two)
    jobs = [1, 2, 4]

    [[workload]]
    name = "ssf"         # as the cover letter names it
    label = "SSF"        # as a sentence names it
    ours = ["ssf", "ssf-presized"]   # the lab's workloads compared with it
    stated_gain_pct = [0, 5, 40]     # the gains as the letter states them
    unpatched_mib = [1000, 1800, 2500]
    patched_mib = [990, 1900, 3500.5]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

FIGURES_FILE = "cover-letter-figures.toml"
RECORD_KEY = "cover_letter"  # where a run's results.json keeps them (its inputs)
_TEXTS = ("title", "about", "setup", "curves")
_SERIES = ("stated_gain_pct", "unpatched_mib", "patched_mib")


@dataclass(frozen=True)
class LetterWorkload:
    name: str
    label: str
    ours: tuple[str, ...]
    stated_gain_pct: dict[int, float]
    unpatched_mib: dict[int, float]
    patched_mib: dict[int, float]

    @property
    def unchanged(self) -> bool:
        """The letter reports no gain at all for it."""
        return not any(self.stated_gain_pct.values())


@dataclass(frozen=True)
class CoverLetterFigures:
    title: str
    about: str
    setup: str
    curves: str
    jobs: tuple[int, ...]
    workloads: tuple[LetterWorkload, ...]

    def workload_for(self, ours: str) -> LetterWorkload | None:
        """The letter's workload that the lab's `ours` is compared with."""
        return next((w for w in self.workloads if ours in w.ours), None)

    def stated_gain_pct(self, ours: str, numjobs: int) -> float | None:
        w = self.workload_for(ours)
        return w.stated_gain_pct.get(numjobs) if w else None

    def to_dict(self) -> dict[str, Any]:
        """The record (JSON-friendly: lists per job count, as in the file)."""
        return {**{k: getattr(self, k) for k in _TEXTS}, "jobs": list(self.jobs),
                "workload": [{"name": w.name, "label": w.label, "ours": list(w.ours),
                              **{k: [getattr(w, k)[n] for n in self.jobs] for k in _SERIES}}
                             for w in self.workloads]}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CoverLetterFigures:
        """From the file's table or a results.json record; ConfigError says what is wrong."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: not a table")
        unknown = sorted(set(data) - {*_TEXTS, "jobs", "workload"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        texts = {k: _text(data, k, where) for k in _TEXTS}
        jobs = data.get("jobs")
        if (not isinstance(jobs, list) or not jobs
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in jobs)
                or len(set(jobs)) != len(jobs)):
            raise ConfigError(f"{where}: `jobs` must be a list of distinct job counts")
        raw = data.get("workload")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}: needs at least one [[workload]]")
        workloads = []
        for i, w in enumerate(raw):
            wwhere = f"{where}: workload #{i + 1}"
            if not isinstance(w, Mapping):
                raise ConfigError(f"{wwhere}: not a table")
            unknown = sorted(set(w) - {"name", "label", "ours", *_SERIES})
            if unknown:
                raise ConfigError(f"{wwhere}: unknown key(s) {', '.join(unknown)}")
            ours = w.get("ours")
            if not isinstance(ours, list) or not ours or not all(
                    isinstance(o, str) and o for o in ours):
                raise ConfigError(f"{wwhere}: `ours` must be a list of the lab's workloads")
            values = {k: _per_job(w, k, jobs, wwhere) for k in _SERIES}
            workloads.append(LetterWorkload(_text(w, "name", wwhere), _text(w, "label", wwhere),
                                            tuple(ours), **values))
        claimed = [o for w in workloads for o in w.ours]
        if len(set(claimed)) != len(claimed):
            raise ConfigError(f"{where}: a workload of ours is compared with two of the letter's")
        return cls(**texts, jobs=tuple(jobs), workloads=tuple(workloads))


def _text(table: Mapping, key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: `{key}` must be a non-empty string")
    return value


def _per_job(table: Mapping, key: str, jobs: list[int], where: str) -> dict[int, float]:
    values = table.get(key)
    if (not isinstance(values, list) or len(values) != len(jobs)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
        raise ConfigError(f"{where}: `{key}` must be {len(jobs)} numbers, one per `jobs` entry")
    return {n: float(v) for n, v in zip(jobs, values, strict=True)}


def load(folder: Path) -> CoverLetterFigures | None:
    """The series folder's figures; None when it has none."""
    path = folder / FIGURES_FILE
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return CoverLetterFigures.from_dict(data, str(path))


def recorded(inputs: Mapping[str, Any]) -> CoverLetterFigures | None:
    """The figures a run recorded in its inputs; None when it recorded none."""
    if RECORD_KEY not in inputs:
        return None
    return CoverLetterFigures.from_dict(inputs[RECORD_KEY], f"results: inputs.{RECORD_KEY}")
