"""Variant names from the command line to buildable `Variant` values.

`baseline` is the source with the series' baseline patch; `v1`..`vN` add one
version of the series; `patched` is the newest version. A user's `--patch`
files make a variant called `user` on top of the baseline; `--kernel-tree`
makes `tree` from the user's tree as it is (their patches on top, if any).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lab.config import LabConfig
from lab.errors import ConfigError
from lab.kernel import KernelSource, Variant
from lab.series import Series, check_features

DEFAULT_NAMES = ("baseline", "patched")
USER_VARIANT = "user"
TREE_VARIANT = "tree"


def known_names(series: Series) -> list[str]:
    return ["baseline", *(v.name for v in series.versions), "patched"]


def split_names(values: Sequence[str]) -> list[str]:
    """`--variant a,b --variant c` -> [a, b, c], order kept, no repeats."""
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def resolve(
    names: Sequence[str],
    *,
    cfg: LabConfig,
    series: Series,
    source: KernelSource | None,
    debug: bool = False,
    user_patches: Sequence[Path] = (),
    expect: Sequence[str] = (),
    tree_source: KernelSource | None = None,
    extra_fragments: Sequence[Path] = (),
) -> list[Variant]:
    fragments = tuple(cfg.fragments) + tuple(extra_fragments)
    if debug:
        fragments += (cfg.debug_fragment,)
    for frag in fragments:
        if not frag.is_file():
            raise ConfigError(f"config fragment {frag} does not exist")
    for patch in user_patches:
        if not patch.is_file():
            raise ConfigError(f"--patch {patch}: no such file")
    expected = check_features(list(expect), "--expect")
    base_patches = (series.baseline,) if series.baseline else ()
    if not names:
        if tree_source is not None:
            names = [TREE_VARIANT]
        elif user_patches:
            names = ["baseline", USER_VARIANT]
        else:
            names = list(DEFAULT_NAMES)
    # An option that would be silently ignored is an error: the user would
    # otherwise test something other than what they think.
    if user_patches and tree_source is None and USER_VARIANT not in names:
        raise ConfigError("--patch builds the variant `user`; add `--variant user` "
                          "(or leave --variant out)")
    claimers = {USER_VARIANT, TREE_VARIANT}
    if expected and not claimers & set(names):
        raise ConfigError("--expect applies to your own patch or tree (variants `user`, "
                          "`tree`); the series' versions declare their features in series.toml")
    if source is None and set(names) - {TREE_VARIANT}:
        raise ConfigError("only variant `tree` can be built without the Debian source")
    variants = []
    for name in names:
        if name == TREE_VARIANT:
            if tree_source is None:
                raise ConfigError("variant `tree` needs --kernel-tree PATH")
            variants.append(
                Variant(name, tree_source, tuple(user_patches), fragments, expected, debug)
            )
        elif name == USER_VARIANT:
            if not user_patches:
                raise ConfigError("variant `user` needs --patch FILE")
            variants.append(
                Variant(name, source, base_patches + tuple(user_patches), fragments, expected,
                        debug)
            )
        elif name == "baseline":
            variants.append(Variant(name, source, base_patches, fragments, (), debug))
        else:
            version_name = series.newest if name == "patched" else name
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or version_name not in [
                v.name for v in series.versions
            ]:
                raise ConfigError(
                    f"unknown variant {name!r}; known: {', '.join(known_names(series))}"
                    f", {USER_VARIANT} (with --patch), {TREE_VARIANT} (with --kernel-tree)"
                )
            version = series.version(version_name)
            variants.append(
                Variant(name, source, base_patches + (version.patch,), fragments,
                        version.features, debug)
            )
    return variants
