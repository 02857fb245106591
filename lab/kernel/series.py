"""Patch series as data: a folder with `series.toml` and one file per version.

Adding a series is adding a folder; nothing in the code names a version.
`source` says which kernel the series applies to (lab.sources); a version's
file is a plain diff or an mbox of several patches (lab.patching);
`baseline_features` are what the baseline already has (e.g. a newer kernel's
I/O modes); each version keeps them and lists what it adds. Feature names
are defined in lab.kernel.features. The experiment's own data lives in the
folder too: the figures its cover letter states (lab.kernel.letter_figures),
the equivalent mutants (lab.mutate.job).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError
from lab.kernel import features as feature_names
from lab.kernel import letter_figures
from lab.kernel.letter_figures import CoverLetterFigures
from lab.kernel.sources import SourceSpec, parse_spec

MANIFEST = "series.toml"
KNOWN_FEATURES = feature_names.KNOWN


@dataclass(frozen=True)
class Version:
    name: str
    patch: Path
    features: tuple[str, ...]
    summary: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    folder: Path
    description: str
    baseline: Path | None
    versions: tuple[Version, ...]
    newest: str
    source: SourceSpec
    baseline_features: tuple[str, ...] = ()
    # What its cover letter measured (cover-letter-figures.toml), if the series says.
    cover_letter: CoverLetterFigures | None = None

    def report_inputs(self) -> dict:
        """What a run records of the series for its report (lab/kernel/letter_figures.py)."""
        if self.cover_letter is None:
            return {}
        return {letter_figures.RECORD_KEY: self.cover_letter.to_dict()}

    def version(self, name: str) -> Version:
        for v in self.versions:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.versions)
        raise ConfigError(f"series {self.name}: no version {name!r} (known: {known})")

    def index(self, name: str) -> int:
        return [v.name for v in self.versions].index(self.version(name).name)


def _str(table: dict, key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: `{key}` must be a non-empty string")
    return value


def check_features(features: object, where: str) -> tuple[str, ...]:
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ConfigError(f"{where}: `features` must be a list of strings")
    unknown = sorted(set(features) - KNOWN_FEATURES)
    if unknown:
        raise ConfigError(
            f"{where}: unknown feature(s) {', '.join(unknown)}"
            f" (known: {', '.join(sorted(KNOWN_FEATURES))})"
        )
    return tuple(features)


def load_series(folder: Path) -> Series:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ConfigError(f"{folder}: not a patch series (no {MANIFEST})")
    try:
        data = tomllib.loads(manifest.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{manifest}: {exc}") from exc
    where = str(manifest)
    known_keys = {"name", "description", "source", "baseline", "baseline_features", "newest",
                  "version"}
    unknown = sorted(set(data) - known_keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known_keys))})")
    name = _str(data, "name", where)
    if "source" not in data:
        raise ConfigError(f'{where}: `source` is required, e.g. source = "debian:linux-source-X"')
    source = parse_spec(data["source"], where, folder)
    baseline_features = check_features(data.get("baseline_features", []),
                                       f"{where}: baseline_features")
    baseline = None
    if "baseline" in data:
        baseline = folder / _str(data, "baseline", where)
        if not baseline.is_file():
            raise ConfigError(f"{where}: `baseline` names a missing file {baseline}")
    raw_versions = data.get("version")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise ConfigError(f"{where}: needs at least one [[version]] table")
    versions = []
    for i, raw in enumerate(raw_versions):
        vwhere = f"{where}: version #{i + 1}"
        vname = _str(raw, "name", vwhere)
        patch = folder / _str(raw, "file", vwhere)
        if not patch.is_file():
            raise ConfigError(f"{vwhere} ({vname}): `file` names a missing file {patch}")
        features = check_features(raw.get("features", []), f"{vwhere} ({vname})")
        versions.append(Version(vname, patch, features, str(raw.get("summary", ""))))
    names = [v.name for v in versions]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: version names repeat: {names}")
    newest = str(data.get("newest", names[-1]))
    if newest not in names:
        raise ConfigError(f"{where}: `newest` = {newest!r} is not a version")
    return Series(name, folder, str(data.get("description", "")), baseline, tuple(versions),
                  newest, source, baseline_features, letter_figures.load(folder))
