"""Kernel sources, variants and cached incremental builds.

A variant is a source tree + patches + config fragments. Builds are
out-of-tree (`make O=`), one build folder per variant. The lab owns a private
copy of every source tree: patches are applied to it for the length of one
build and taken out again, so the tree is pristine at rest and a user's own
tree is never written. A new variant's build folder starts as a copy of a
sibling's, so only what its patches touch is compiled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BuildError, KconfigUnmet, PatchError
from lab.host import cache, proc
from lab.host.tools import require_tools
from lab.kernel import gittree, patching, sources
from lab.kernel.sources import KernelSource

__all__ = ["KernelSource", "Variant", "KernelBuild", "build", "apply_patches", "restore_tree"]

# Bump when the way a build is made changes, so old artifacts are not reused.
RECIPE_VERSION = "1"
DEFAULT_BASE_CONFIG = "tinyconfig"
BUILD_TOOLS = ("make", "gcc", "flex", "bison", "bc", "git", "rsync", "xz", "tar", "perl")
WORK_DIR = "work"  # the fixed path every variant of a group is built at
SEEDING_PREFIX = ".seeding-"  # a build folder being copied from a sibling

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    name: str
    source: KernelSource
    patches: tuple[Path, ...]
    fragments: tuple[Path, ...]
    features: tuple[str, ...] = ()
    debug: bool = False
    # Refuse fuzz (not part of the key: the same inputs give the same bzImage;
    # a cached build made with fuzz is refused too).
    strict: bool = False
    # Where the config starts before the fragments are merged on top: a make
    # target that writes a config (tinyconfig, defconfig, ...) or the user's
    # own .config (a Path).
    base_config: str | Path = DEFAULT_BASE_CONFIG

    @property
    def build_name(self) -> str:
        return f"{self.name}-debug" if self.debug else self.name

    def _base_config_part(self) -> list[bytes]:
        """The base config in a key; none for the default tinyconfig, so the keys
        of every build made before it could be chosen stay valid."""
        if isinstance(self.base_config, Path):
            return [b"base-config-file:" + self.base_config.read_bytes()]
        if self.base_config == DEFAULT_BASE_CONFIG:
            return []
        return [b"base-config-target:" + self.base_config.encode()]

    def config_key(self) -> str:
        return cache.digest([RECIPE_VERSION, *self._base_config_part(),
                             *(f.read_bytes() for f in self.fragments)])

    def key(self) -> str:
        """Hash of every input that can change the bzImage."""
        return cache.digest(
            [
                RECIPE_VERSION,
                self.source.key,
                compiler_version(),
                *(b"patch:" + p.read_bytes() for p in self.patches),
                *(b"config:" + f.read_bytes() for f in self.fragments),
                *self._base_config_part(),
            ]
        )


@dataclass(frozen=True)
class KernelBuild:
    variant: str
    key: str
    bzimage: Path
    config: Path
    sha256: str
    release: str
    seconds: float
    cached: bool
    features: tuple[str, ...] = ()
    debug: bool = False
    log: Path | None = None
    source: str = ""
    # Each applied patch (mbox mails one by one): file, subject, fuzz, offsets.
    applied: tuple[dict, ...] = ()
    # Cover letters (patch 0/N) of the mboxes applied, for the report.
    cover_letters: tuple[dict, ...] = ()
    # The uncompressed kernel of the same build: QEMU enters it directly
    # (PVH), skipping the bzImage's decompression (seconds under TCG).
    vmlinux: Path | None = None
    base_config: str = "tinyconfig"  # where the config started (a make target or a file)

    @property
    def boot_image(self) -> Path:
        return self.vmlinux or self.bzimage

    @property
    def fuzz(self) -> list[str]:
        return [f'{a["file"]} [{a["index"]}] "{a["subject"]}": fuzz {a["fuzz"]}'
                for a in self.applied if a.get("fuzz")]

    def to_dict(self) -> dict:
        return {
            "name": self.variant,
            "bzimage": str(self.bzimage),
            "sha256": self.sha256,
            "release": self.release,
            "seconds": round(self.seconds, 1),
            "cached": self.cached,
            "features": list(self.features),
            "debug": self.debug,
            "key": self.key,
            "source": self.source,
            "base_config": self.base_config,
            "patches": list(self.applied),
            "fuzz": self.fuzz,
            "cover_letters": list(self.cover_letters),
        }


@functools.cache
def compiler_version() -> str:
    out = proc.run(["gcc", "--version"], timeout=60, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


# --- patches -----------------------------------------------------------------


@dataclass(frozen=True)
class PatchResult:
    applied: tuple[patching.Applied, ...]
    cover_letters: tuple[patching.CoverLetter, ...]
    touched: tuple[str, ...]  # every path that now differs from the source's commit


def source_commit(tree: Path) -> str:
    """The commit a lab-owned tree is pristine at (recorded when it was made)."""
    marker = tree / ".git" / sources.COMMIT_FILE
    if not marker.is_file():
        raise BuildError(f"{tree}: not a source tree made by the lab (no {marker.name})")
    return marker.read_text().strip()


def make_source_tree(tree: Path, log_path: Path | None = None) -> str:
    """Commit a folder as a pristine lab-owned tree (the tests' toy trees)."""
    commit = gittree.commit_all(tree, "source (kernel-lab)", log_path=log_path,
                                init=not gittree.is_repo(tree))
    (tree / ".git" / sources.COMMIT_FILE).write_text(commit + "\n")
    return commit


def apply_patches(tree: Path, patches: Sequence[Path], log_path: Path, *,
                  commit: str = "", strict: bool = False) -> PatchResult:
    """Apply `patches` (diffs or mboxes) in order to the pristine `tree`.

    The tree is checked out at `commit` (default: the one it was made at) and
    proven clean first; on any failure it is restored with git and a
    PatchError names the patch (file, mail subject) and the hunk.
    """
    commit = commit or source_commit(tree)
    gittree.ensure_pristine(tree, commit, log_path=log_path)
    pieces: list[patching.Piece] = []
    covers: list[patching.CoverLetter] = []
    for patch in patches:
        got, cover = patching.read_pieces(patch)
        pieces += got
        covers += cover
    try:
        applied = patching.apply_pieces(tree, pieces, log_path, strict=strict,
                                        scratch=log_path.parent / f"{log_path.stem}.pieces")
        touched = gittree.changed_paths(tree, log_path=log_path)
    except BaseException:
        gittree.restore(tree, commit, log_path=log_path)
        raise
    return PatchResult(tuple(applied), tuple(covers), tuple(touched))


def source_lock(variant: Variant, cache_root: Path) -> contextlib.AbstractContextManager:
    """The lock of the variant's source: one build (or patch) on it at a time."""
    return locked_source(variant.source, cache_root)


def locked_source(source: KernelSource, cache_root: Path) -> contextlib.AbstractContextManager:
    """Hold `source`'s lock: whoever reads its files while another lab
    process builds from it would read that build's patches applied."""
    return cache.locked(cache_root / "locks" / f"src-{source.build_group}.lock")


@contextlib.contextmanager
def patched_source(variant: Variant, commit: str, log_path: Path) -> Iterator[PatchResult]:
    """The variant's source with its patches applied, for the length of the
    block (under `source_lock`); restored after, and proven pristine before
    anything else builds from it."""
    tree = variant.source.path
    patched = apply_patches(tree, variant.patches, log_path, commit=commit,
                            strict=variant.strict)
    try:
        yield patched
    finally:
        gittree.restore(tree, commit, log_path=log_path)
    gittree.ensure_pristine(tree, commit, log_path=log_path)


def restore_tree(tree: Path, commit: str = "") -> None:
    """Put the tree back at its commit (also after a crash mid-build)."""
    gittree.ensure_pristine(tree, commit or source_commit(tree))


def files_after(patches: Sequence[Path], source: KernelSource, rels: Sequence[str],
                work: Path, *, cache_root: Path, strict: bool = False) -> dict[str, str]:
    """The text of files `rels` after `patches`, worked out on a scratch copy of
    just those files at `work` (the cached source is only read, under its lock)."""
    with locked_source(source, cache_root):
        for rel in rels:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.path / rel, work / rel)
    make_source_tree(work)
    apply_patches(work, patches, work.parent / f"{work.name}-patch.log", strict=strict)
    texts = {rel: (work / rel).read_text() for rel in rels}
    restore_tree(work)
    return texts


# --- config ------------------------------------------------------------------

_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """Kconfig lines to {symbol: value}; `is not set` becomes "n"."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET_RE.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET_RE.match(line):
            values[m.group(1)] = "n"
    return values


def store_fragment(options: dict[str, str], cache_root: Path, name: str) -> Path:
    """`options` as a config fragment in the cache, named by its content (so the
    kernel's key follows what it asks for). `=m` is written `=y`: the lab's
    guests boot without modules."""
    text = "".join(f"# {k} is not set\n" if v == "n" else f"{k}={'y' if v == 'm' else v}\n"
                   for k, v in sorted(options.items()))
    path = cache_root / "fragments" / f"{name}-{cache.digest([text])[:16]}.config"
    if not path.is_file():
        cache.write_atomic(path, text)
    return path


def unmet_options(fragments: Sequence[Path], final_config: str) -> list[str]:
    """Options a fragment asked for that `olddefconfig` did not keep."""
    final = parse_config(final_config)
    problems = []
    for frag in fragments:
        for sym, want in parse_config(frag.read_text()).items():
            got = final.get(sym, "n")
            if got != want:
                problems.append(f"{sym}={want} (from {frag.name}) ended up as {sym}={got}")
    return problems


# --- builds ------------------------------------------------------------------


class _BuildProgress:
    """Turns kbuild's `  CC  path` lines into short progress messages."""

    def __init__(self, report: ProgressFn | None) -> None:
        self.report = report
        self.compiled = 0

    def __call__(self, line: str) -> None:
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("CC", "AS", "LD", "AR", "OBJCOPY"):
            if parts[0] in ("CC", "AS"):
                self.compiled += 1
            if self.report:
                self.report(f"{self.compiled} objects, {parts[0]} {parts[1]}")


def build(
    variant: Variant,
    cache_root: Path,
    log_dir: Path,
    *,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
) -> KernelBuild:
    """Return the variant's bzImage, building it only when its inputs changed."""
    key = variant.key()
    art = cache_root / "kernels" / key
    meta_path = art / "meta.json"
    if meta_path.is_file():
        return _checked(variant, _from_meta(variant, art, cached=True))
    require_tools(BUILD_TOOLS)
    log_path = log_dir / f"build-{variant.build_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    start = time.monotonic()
    tree = variant.source.path
    commit = variant.source.commit or source_commit(tree)
    with source_lock(variant, cache_root):
        if meta_path.is_file():  # another lab process built it while we waited
            return _checked(variant, _from_meta(variant, art, cached=True))
        bdir = _build_dir(variant, cache_root)
        with contextlib.ExitStack() as stack:
            patched = stack.enter_context(patched_source(variant, commit, log_path))
            _mark_stale(tree, bdir, list(patched.touched))
            work = stack.enter_context(_at_work_path(bdir))
            _configure(variant, tree, work, log_path)
            release_suffix = f"-lab-{key[:8]}"
            env = {
                "KBUILD_BUILD_USER": "kernel-lab",
                "KBUILD_BUILD_HOST": "kernel-lab",
                "KBUILD_BUILD_TIMESTAMP": "kernel-lab",
            }
            argv = ["make", "-C", tree, f"O={work}", f"-j{jobs or os.cpu_count() or 2}",
                    f"LOCALVERSION={release_suffix}", "bzImage"]
            (work / ".lab-reproduce").write_text(
                f"# rebuild this variant by hand: check out {commit} in {tree},\n"
                "# apply the patches with `git apply`, then:\n"
                + shlex.join(str(a) for a in argv) + "\n"
            )
            proc.run(argv, timeout=3 * 3600, log_path=log_path, env=env,
                     on_line=_BuildProgress(progress), error=BuildError,
                     what=f"building {variant.build_name}")
        release = (bdir / "include/config/kernel.release").read_text().strip()
        staging = art.with_name(art.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(bdir / "arch/x86/boot/bzImage", staging / "bzImage")
        shutil.copy2(bdir / "vmlinux", staging / "vmlinux")
        shutil.copy2(bdir / ".config", staging / "config")
        shutil.copy2(log_path, staging / "build.log")
        seconds = time.monotonic() - start
        cache.write_json(staging / "meta.json", {
            "variant": variant.name,
            "release": release,
            "sha256": cache.file_sha256(staging / "bzImage"),
            "seconds": seconds,
            "source": variant.source.description,
            "source_commit": commit,
            "patches": [str(p) for p in variant.patches],
            "applied": [a.to_dict() for a in patched.applied],
            "cover_letters": [dataclasses.asdict(c) for c in patched.cover_letters],
            "fragments": [str(f) for f in variant.fragments],
            "base_config": str(variant.base_config),
            "compiler": compiler_version(),
            "build_dir": str(bdir),
        })
        cache.publish_dir(staging, art)
        (bdir / ".lab-ok").write_text(key + "\n")
    built = _from_meta(variant, art, cached=False)
    return KernelBuild(**{**built.__dict__, "seconds": seconds, "log": log_path})


def _checked(variant: Variant, build: KernelBuild) -> KernelBuild:
    """A cached build made with fuzz is refused under --strict, as a new one would be."""
    if variant.strict and build.fuzz:
        raise PatchError(f"{variant.build_name}: its patches apply only with fuzz "
                         "(--strict refuses fuzz)", excerpt="\n".join(build.fuzz))
    return build


def _from_meta(variant: Variant, art: Path, *, cached: bool) -> KernelBuild:
    meta = json.loads((art / "meta.json").read_text())
    return KernelBuild(
        variant=variant.name,
        key=art.name,
        bzimage=art / "bzImage",
        config=art / "config",
        sha256=meta["sha256"],
        release=meta["release"],
        seconds=0.0 if cached else meta["seconds"],
        cached=cached,
        features=variant.features,
        debug=variant.debug,
        log=art / "build.log",
        source=meta.get("source", variant.source.description),
        applied=tuple(meta.get("applied", ())),
        cover_letters=tuple(meta.get("cover_letters", ())),
        vmlinux=art / "vmlinux" if (art / "vmlinux").is_file() else None,
        base_config=str(variant.base_config),
    )


def _build_dir(variant: Variant, cache_root: Path) -> Path:
    """The variant's own build folder, seeded from a built sibling if new.

    Siblings share the source copy and the config fragments, so their objects
    are valid here except for the files patches touched, which `_mark_stale`
    forces make to rebuild.
    """
    group = cache_root / "build" / variant.source.build_group / variant.config_key()[:16]
    _recover_work(group)
    bdir = group / variant.build_name
    if (bdir / ".lab-ok").exists():
        return bdir
    shutil.rmtree(bdir, ignore_errors=True)
    # The copy is made beside and renamed into place: an interrupted copy
    # (which may already hold the sibling's `.lab-ok`) is never taken for a
    # built folder, only thrown away by the next build.
    seeding = group / f"{SEEDING_PREFIX}{variant.build_name}"
    shutil.rmtree(seeding, ignore_errors=True)
    siblings = sorted(
        (d for d in group.glob("*") if d.name != WORK_DIR
         and not d.name.startswith(SEEDING_PREFIX) and (d / ".lab-ok").exists()),
        key=lambda d: (d / ".lab-ok").stat().st_mtime,
        reverse=True,
    )
    if siblings:
        proc.run(["cp", "-a", "--reflink=auto", siblings[0], seeding], timeout=900,
                 error=BuildError, what=f"seeding {bdir.name} from {siblings[0].name}")
        (seeding / ".lab-ok").unlink()
        os.rename(seeding, bdir)
    else:
        bdir.mkdir(parents=True)
    return bdir


def _recover_work(group: Path) -> None:
    """A build killed mid-way leaves its folder at `work`: give it back to its
    variant, without the `.lab-ok` mark, so it is only ever built on, never
    used to seed another variant."""
    work = group / WORK_DIR
    if not work.exists():
        return
    owner = work / ".lab-variant"
    name = owner.read_text().strip() if owner.exists() else ""
    (work / ".lab-ok").unlink(missing_ok=True)
    owner.unlink(missing_ok=True)
    if name and not (group / name).exists():
        os.rename(work, group / name)
    else:
        shutil.rmtree(work)


@contextlib.contextmanager
def _at_work_path(bdir: Path) -> Iterator[Path]:
    """Move the variant's build folder to the group's fixed `work` path for
    the length of a build.

    kbuild records the (symlink-resolved) output path in its command files,
    objtool's above all, and every object depends on objtool: a folder copied
    from a sibling would rebuild everything under a new path. Building every
    variant at the same path keeps what kbuild recorded valid. The source lock
    is held, so only one build uses `work` at a time.
    """
    work = bdir.parent / WORK_DIR
    owner = work / ".lab-variant"
    _recover_work(bdir.parent)
    os.rename(bdir, work)
    owner.write_text(bdir.name + "\n")
    try:
        yield work
    finally:
        owner.unlink(missing_ok=True)
        os.rename(work, bdir)


def _mark_stale(tree: Path, bdir: Path, touched: list[str]) -> None:
    """Make `make` rebuild every object built from a file some patch touched.

    Restoring a file brings back old content with a new-or-old mtime, so the
    safe rule is: any file patched now or at this folder's previous build (or
    its seed's) gets a fresh mtime now.
    """
    record = bdir / ".lab-patched-files"
    previous = record.read_text().split() if record.exists() else []
    now = time.time()
    for rel in sorted(set(previous) | set(touched)):
        path = tree / rel
        if path.exists():
            os.utime(path, (now, now))
    record.write_text("\n".join(touched) + "\n")


def _configure(variant: Variant, tree: Path, bdir: Path, log_path: Path) -> None:
    """The base config (tinyconfig, a make target or the user's file) + the
    fragments (merge_config.sh) + olddefconfig, then verify they stuck."""
    common = ["make", "-C", tree, f"O={bdir}"]
    if isinstance(variant.base_config, Path):
        shutil.copyfile(variant.base_config, bdir / ".config")
    else:
        proc.run([*common, variant.base_config], timeout=600, log_path=log_path,
                 error=BuildError, what=f"make {variant.base_config}")
    proc.run(
        [tree / "scripts/kconfig/merge_config.sh", "-m", "-O", bdir, bdir / ".config",
         *variant.fragments],
        cwd=tree, timeout=300, log_path=log_path, error=BuildError, what="merge_config.sh",
    )
    proc.run([*common, "olddefconfig"], timeout=600, log_path=log_path, error=BuildError,
             what="make olddefconfig")
    problems = unmet_options(variant.fragments, (bdir / ".config").read_text())
    if problems:
        raise KconfigUnmet(
            f"{len(problems)} config option(s) did not stick after olddefconfig "
            "(a missing dependency or a misspelt symbol):",
            excerpt="\n".join(problems),
            log_path=log_path,
        )
