"""kselftest targets built from the variant's own source (`lab test --kselftest`).

A target is a folder of the tree's `tools/testing/selftests` (memfd,
filesystems, net/forwarding, ...). It is built from the same source and
patches as the variant's kernel, so an A/B whose sides differ in the tests
builds them per side, and installed in kselftest's own layout
(`run_kselftest.sh`, `kselftest-list.txt`, one folder per target), which the
guest then runs (lab.suite.kselftest). The build is cached by everything
that decides it.

What a target needs from the kernel is its `config` file; the options are
merged into the variant's config as one more fragment and verified like the
lab's own. `=m` becomes `=y`: the lab's guests boot without modules.
"""

from __future__ import annotations

import difflib
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BuildError, ConfigError
from lab.host import cache, proc
from lab.kernel.build import (
    Variant,
    compiler_version,
    parse_config,
    patched_source,
    source_commit,
    source_lock,
    store_fragment,
)
from lab.kernel.tree_files import TreeFiles

RECIPE_VERSION = "1"
TARBALL = "install.tar.gz"
SELFTESTS = Path("tools/testing/selftests")
_TARGET = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


@dataclass(frozen=True)
class KselftestBuild:
    """Installed kselftest targets: `path` holds run_kselftest.sh."""

    key: str
    targets: tuple[str, ...]
    path: Path
    seconds: float
    cached: bool
    log: Path

    @property
    def tarball(self) -> Path:
        """The install folder as one file, what is copied into a guest."""
        return self.path.with_name(TARBALL)


def split_targets(values: Sequence[str], where: str) -> tuple[str, ...]:
    """`--kselftest a,b --kselftest c` -> (a, b, c), order kept; names checked."""
    found: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().strip("/")
            if not name:
                continue
            if not _TARGET.fullmatch(name) or ".." in name.split("/"):
                raise ConfigError(f"{where}: {name!r} is not a kselftest target name "
                                  "(a folder of tools/testing/selftests, e.g. memfd)")
            if name not in found:
                found.append(name)
    return tuple(found)


def check_targets(tree: TreeFiles, targets: Sequence[str], where: str) -> None:
    """Every target is a folder with a Makefile in this source; else ConfigError
    naming it, with the nearest names the source has."""
    root = str(SELFTESTS)
    have = tree.names(root)
    if not have:
        raise ConfigError(f"{where}: {tree.repo} at {tree.commit[:12]} has no {SELFTESTS}")
    for target in targets:
        if not tree.is_file(f"{root}/{target}/Makefile"):
            near = difflib.get_close_matches(target, have, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise ConfigError(f"{where}: no kselftest target {target!r} in {tree.repo} at "
                              f"{tree.commit[:12]} ({len(have)} entries in {SELFTESTS}){hint}")


def required_options(tree: TreeFiles, targets: Sequence[str]) -> dict[str, str]:
    """The options the targets' `config` files ask for, `=m` read as `=y`."""
    wanted: dict[str, str] = {}
    for target in targets:
        text = tree.read(f"{SELFTESTS}/{target}/config")
        if text is not None:
            for name, value in parse_config(text).items():
                wanted[name] = "y" if value == "m" else value
    return wanted


def fragment(tree: TreeFiles, targets: Sequence[str], have: Sequence[Path],
             cache_root: Path) -> Path | None:
    """A config fragment with the targets' options that the variant's fragments
    do not already set the same way (so a target whose needs the lab's config
    meets keeps the kernel's key and its cached build), or None if none."""
    already: dict[str, str] = {}
    for frag in have:
        already.update(parse_config(frag.read_text()))
    missing = {k: v for k, v in required_options(tree, targets).items()
               if already.get(k) != v}
    return store_fragment(missing, cache_root, "kselftest") if missing else None


def _key(variant: Variant, targets: Sequence[str], commit: str) -> str:
    return cache.digest([
        RECIPE_VERSION, variant.source.key, commit, *(p.read_bytes() for p in variant.patches),
        ",".join(targets), compiler_version(),
    ])


def build(variant: Variant, targets: Sequence[str], cache_root: Path, log_dir: Path,
          *, jobs: int | None = None) -> KselftestBuild:
    """Build and install `targets` from the variant's patched source, or reuse
    the cached install."""
    commit = variant.source.commit or source_commit(variant.source.path)
    key = _key(variant, targets, commit)
    art = cache_root / "kselftest" / key
    log_path = log_dir / f"kselftest-{variant.build_name}.log"
    cached = KselftestBuild(key, tuple(targets), art / "install", 0.0, True, art / "build.log")
    if (art / "meta.json").is_file():
        return cached
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    start = time.monotonic()
    staging = art.with_name(art.name + ".partial")
    with source_lock(variant, cache_root):
        if (art / "meta.json").is_file():  # built by another lab process meanwhile
            return cached
        shutil.rmtree(staging, ignore_errors=True)
        out = staging / "out"
        out.mkdir(parents=True)
        tree = variant.source.path
        jobs_arg = f"-j{jobs or 2}"
        with patched_source(variant, commit, log_path):
            # The UAPI headers of this very source, where the selftests' own
            # Makefile looks for them with O= (KHDR_INCLUDES).
            proc.run(["make", "-C", tree, f"O={out}", jobs_arg, "headers"], timeout=1800,
                     log_path=log_path, error=BuildError, what="make headers")
            proc.run(["make", "-C", tree / SELFTESTS, f"O={out}", jobs_arg,
                      f"TARGETS={' '.join(targets)}", f"KSFT_INSTALL_PATH={staging / 'install'}",
                      "install"],
                     timeout=3600, log_path=log_path, error=BuildError,
                     what=f"building kselftest {', '.join(targets)}")
        listed = staging / "install" / "kselftest-list.txt"
        if not listed.is_file() or not listed.read_text().strip():
            raise BuildError(f"kselftest {', '.join(targets)}: nothing installed to run",
                             log_path=log_path)
        shutil.rmtree(out)
        proc.run(["tar", "-C", staging / "install", "-czf", staging / TARBALL, "."],
                 timeout=600, log_path=log_path, error=BuildError, what="packing kselftest")
        shutil.copy2(log_path, staging / "build.log")
        seconds = time.monotonic() - start
        cache.write_json(staging / "meta.json", {
            "variant": variant.name, "targets": list(targets), "seconds": seconds,
            "source": variant.source.description, "source_commit": commit,
            "patches": [str(p) for p in variant.patches], "compiler": compiler_version(),
        })
        cache.publish_dir(staging, art)
    return KselftestBuild(key, tuple(targets), art / "install", seconds, False, log_path)
