"""Variant names from the command line to buildable `Variant` values.

`baseline` is the source with the series' baseline patch; `v1`..`vN` add one
version of the series; `patched` is the newest version. A user's `--patch`
files make a variant called `user` on top of the baseline; `--kernel-tree`
makes `tree` from the user's tree as it is (their patches on top, if any).
`--kernel-tree T --base REV [--head REV]` is an A/B of the user's own tree:
`baseline` is REV, `patched` is the head (default: the working tree as it is).
The series' source (series.toml `source`) is resolved only when a variant
is built from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.config import DATA_ROOT, LabConfig
from lab.errors import ConfigError
from lab.kernel import implied, sources
from lab.kernel.build import DEFAULT_BASE_CONFIG, KernelSource, Variant
from lab.kernel.series import Series, check_features, load_series

DEFAULT_NAMES = ("baseline", "patched")
USER_VARIANT = "user"
TREE_VARIANT = "tree"


@dataclass(frozen=True)
class TreeAB:
    """`--kernel-tree PATH --base REV [--head REV]`."""

    tree: Path
    base: str
    head: str | None = None


def known_names(series: Series) -> list[str]:
    return ["baseline", *(v.name for v in series.versions), "patched"]


def _unknown(name: str, series: Series) -> ConfigError:
    return ConfigError(f"unknown variant {name!r}; known: {', '.join(known_names(series))}"
                       f", {USER_VARIANT} (with --patch), {TREE_VARIANT} (with --kernel-tree)")


def split_names(values: Sequence[str]) -> list[str]:
    """`--variant a,b --variant c` -> [a, b, c], order kept, no repeats."""
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def _checked_inputs(cfg: LabConfig, debug: bool, user_patches: Sequence[Path],
                    expect: Sequence[str]) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """The variants' config fragments and the claim, every file checked before any build."""
    fragments = tuple(cfg.fragments) + ((cfg.debug_fragment,) if debug else ())
    for frag in fragments:
        if not frag.is_file():
            raise ConfigError(f"config fragment {frag} does not exist")
    for patch in user_patches:
        if not patch.is_file():
            raise ConfigError(f"--patch {patch}: no such file")
    return fragments, check_features(list(expect), "--expect")


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
    strict: bool = False,
) -> list[Variant]:
    fragments, expected = _checked_inputs(cfg, debug, user_patches, expect)
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
        raise ConfigError("only variant `tree` can be built without the series' source")
    if source is not None:
        _check_baseline_features(series, source)
    variants = []
    for name in names:
        if name == TREE_VARIANT:
            if tree_source is None:
                raise ConfigError("variant `tree` needs --kernel-tree PATH")
            variants.append(
                Variant(name, tree_source, tuple(user_patches), fragments,
                        _with_implied(tree_source, expected), debug, strict)
            )
        elif name == USER_VARIANT:
            if not user_patches:
                raise ConfigError("variant `user` needs --patch FILE")
            variants.append(
                Variant(name, source, base_patches + tuple(user_patches), fragments,
                        _on_baseline(series, expected), debug, strict)
            )
        elif name == "baseline":
            variants.append(Variant(name, source, base_patches, fragments,
                                    series.baseline_features, debug, strict))
        else:
            version_name = series.newest if name == "patched" else name
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or version_name not in [
                v.name for v in series.versions
            ]:
                raise _unknown(name, series)
            version = series.version(version_name)
            variants.append(
                Variant(name, source, base_patches + (version.patch,), fragments,
                        _on_baseline(series, version.features), debug, strict)
            )
    return variants


_CONFIG_TARGET = re.compile(r"[a-z0-9_.]*config")


def base_config(kconfig: str | None) -> str | Path:
    """--kconfig: a make target that writes a config (defconfig, tinyconfig,
    allnoconfig, ...) or a .config file; none: tinyconfig."""
    if kconfig is None:
        return DEFAULT_BASE_CONFIG
    path = Path(kconfig).expanduser()
    if path.is_file():
        return path.resolve()
    if "/" in kconfig or path.suffix or not _CONFIG_TARGET.fullmatch(kconfig):
        raise ConfigError(f"--kconfig {kconfig}: no such file, and not a make target that "
                          "writes a config (defconfig, tinyconfig, allnoconfig, ...)")
    return kconfig


def extra_fragments(given: Sequence[Path]) -> tuple[Path, ...]:
    """--fragment: a file, or the name of one the lab ships (sanitizers, lkdtm, debug)."""
    found = []
    for frag in given:
        shipped = DATA_ROOT / "kernels" / f"{frag}.config"
        if frag.is_file():
            found.append(frag.resolve())
        elif len(frag.parts) == 1 and shipped.is_file():
            found.append(shipped)
        else:
            names = ", ".join(sorted(p.stem for p in (DATA_ROOT / "kernels").glob("*.config")))
            raise ConfigError(f"--fragment {frag}: no such file, nor a shipped fragment "
                              f"({names})")
    return tuple(found)


def _with_implied(source: KernelSource, claims: Sequence[str]) -> tuple[str, ...]:
    """A tree's claim plus what its source implies regardless (e.g. 6.9+'s I/O modes)."""
    return tuple(dict.fromkeys((*implied.regardless(source), *claims)))


def _check_baseline_features(series: Series, source: KernelSource) -> None:
    """series.toml's baseline_features must be what the source implies: the
    detection is the truth, the declaration a check of it."""
    found = set(implied.regardless(source))
    declared = set(series.baseline_features) & set(implied.REGARDLESS)
    if found != declared:
        raise ConfigError(
            f"series {series.name}: baseline_features declares "
            f"{', '.join(sorted(declared)) or 'none'}, but {source.description} implies "
            f"{', '.join(sorted(found)) or 'none'} (of {', '.join(implied.REGARDLESS)}; "
            "lab features --kernel-tree shows why)")


def _on_baseline(series: Series, claims: Sequence[str]) -> tuple[str, ...]:
    """What a patch on top of the baseline claims: the baseline's features (e.g. a
    newer kernel's I/O modes) plus its own. Dropping one is a bug the suite must
    see (a 6.12 version blind to I/O modes fails cached-open), not a smaller claim."""
    return tuple(dict.fromkeys((*series.baseline_features, *claims)))


def resolve_ab(names: Sequence[str], *, cfg: LabConfig, ab: TreeAB, cache_root: Path,
               log_dir: Path, debug: bool = False, user_patches: Sequence[Path] = (),
               expect: Sequence[str] = (), strict: bool = False) -> list[Variant]:
    """`baseline` = the tree at --base, `patched` = its head; --expect is the head's claim."""
    unknown = [n for n in names if n not in DEFAULT_NAMES]
    if unknown:
        raise ConfigError(f"with --base, the variants are baseline (--base) and patched "
                          f"(the head), not {', '.join(unknown)}")
    fragments, expected = _checked_inputs(cfg, debug, user_patches, expect)
    base_src, head_src = sources.ab_sources(ab.tree, ab.base, ab.head, cache_root, log_dir)
    # The base is not under test: it claims everything its source shows,
    # parallel direct writes included; the head claims what it implies
    # regardless plus --expect.
    by_name = {
        "baseline": Variant("baseline", base_src, (), fragments,
                            tuple(implied.detect(base_src)), debug, strict),
        "patched": Variant("patched", head_src, tuple(user_patches), fragments,
                           _with_implied(head_src, expected), debug, strict),
    }
    return [by_name[n] for n in (names or DEFAULT_NAMES)]


def from_request(cfg: LabConfig, *, names: Sequence[str], log_dir: Path, debug: bool = False,
                 patches: Sequence[Path] = (), expect: Sequence[str] = (),
                 kernel_tree: Path | None = None, base: str | None = None,
                 head: str | None = None, strict: bool = False) -> list[Variant]:
    """The command line's variant options to variants, every check before any build."""
    names = split_names(names)
    if head and not base:
        raise ConfigError("--head needs --base (the revision to compare it with)")
    if base:
        if kernel_tree is None:
            raise ConfigError("--base needs --kernel-tree PATH (a git tree)")
        return resolve_ab(names, cfg=cfg, ab=TreeAB(kernel_tree, base, head),
                          cache_root=cfg.cache_root, log_dir=log_dir, debug=debug,
                          user_patches=patches, expect=expect, strict=strict)
    series = load_series(cfg.series)
    # Names and sources are checked before anything is unpacked or copied.
    known = {*known_names(series), USER_VARIANT, TREE_VARIANT}
    for name in names:
        if name not in known:
            raise _unknown(name, series)
    if not (kernel_tree and set(names) <= {TREE_VARIANT}):
        sources.check_available(series.source)
    tree = sources.tree_source(kernel_tree, cfg.cache_root, log_dir) if kernel_tree else None
    # The series' source is unpacked only if a variant is built from it.
    tree_only = tree is not None and set(names) <= {TREE_VARIANT}
    source = None if tree_only else sources.resolve(series.source, cfg.cache_root, log_dir)
    return resolve(names, cfg=cfg, series=series, source=source, debug=debug,
                   user_patches=patches, expect=expect, tree_source=tree, strict=strict)
