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
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import cache, proc
from lab.errors import BuildError, ConfigError, PatchError, ToolMissing
from lab.host import require_tools

DEBIAN_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
DEBIAN_PACKAGE = "linux-source-6.1"
# Bump when the way a build is made changes, so old artifacts are not reused.
RECIPE_VERSION = "1"
BUILD_TOOLS = ("make", "gcc", "flex", "bison", "bc", "patch", "rsync", "xz", "tar", "perl")
STATE_FILE = ".lab-state.json"  # in a source copy while patches are applied
WORK_DIR = "work"  # the fixed path every variant of a group is built at

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class KernelSource:
    """A tree the lab owns (a private copy); `key` names its content."""

    key: str
    path: Path
    description: str
    # Sources that share one tree (the commits of a git bisect) share build
    # folders and a lock, so each step is an incremental build.
    group: str = ""

    @property
    def build_group(self) -> str:
        return self.group or self.key


@dataclass(frozen=True)
class Variant:
    name: str
    source: KernelSource
    patches: tuple[Path, ...]
    fragments: tuple[Path, ...]
    features: tuple[str, ...] = ()
    debug: bool = False

    @property
    def build_name(self) -> str:
        return f"{self.name}-debug" if self.debug else self.name

    def config_key(self) -> str:
        return cache.digest([RECIPE_VERSION, *(f.read_bytes() for f in self.fragments)])

    def key(self) -> str:
        """Hash of every input that can change the bzImage."""
        return cache.digest(
            [
                RECIPE_VERSION,
                self.source.key,
                compiler_version(),
                *(b"patch:" + p.read_bytes() for p in self.patches),
                *(b"config:" + f.read_bytes() for f in self.fragments),
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
    extra: dict = field(default_factory=dict)

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
        }


@functools.cache
def compiler_version() -> str:
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


# --- sources -----------------------------------------------------------------


def debian_source(cache_root: Path, log_dir: Path) -> KernelSource:
    """Debian's linux-source-6.1, unpacked into the cache once."""
    if not DEBIAN_TARBALL.is_file():
        raise ToolMissing(
            f"{DEBIAN_TARBALL} is missing: install it with `apt-get install {DEBIAN_PACKAGE}`"
        )
    version = _debian_package_version()
    key = f"debian-{version}"
    dest = cache_root / "src" / key
    with cache.locked(cache_root / "locks" / f"src-{key}.lock"):
        if not (dest / "Makefile").is_file():
            staging = dest.with_name(dest.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            proc.run(
                ["tar", "-xJf", DEBIAN_TARBALL, "-C", staging, "--strip-components=1"],
                timeout=900,
                log_path=log_dir / "unpack-source.log",
                error=BuildError,
                what="unpacking the kernel source",
            )
            cache.publish_dir(staging, dest)
    return KernelSource(key, dest, f"Debian {DEBIAN_PACKAGE} {version}")


def _debian_package_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", DEBIAN_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    # Not installed as a package (a copied tarball): name it by content.
    return cache.file_sha256(DEBIAN_TARBALL)[:16]


def tree_source(tree: Path, cache_root: Path, log_dir: Path) -> KernelSource:
    """A user's tree, copied as it is (uncommitted changes included).

    rsync keeps mtimes, so a second copy of a barely changed tree is quick and
    `make` rebuilds only what changed.
    """
    tree = tree.expanduser().resolve()
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise ConfigError(f"--kernel-tree {tree}: not a kernel source tree (no Makefile/Kconfig)")
    name = cache.digest([str(tree)])[:12]
    dest = cache_root / "src" / f"tree-{name}"
    with cache.locked(cache_root / "locks" / f"src-tree-{name}.lock"):
        dest.mkdir(parents=True, exist_ok=True)
        proc.run(
            ["rsync", "-a", "--delete", "--exclude=/.git", f"{tree}/", f"{dest}/"],
            timeout=1800,
            log_path=log_dir / "copy-tree.log",
            error=BuildError,
            what="copying the kernel tree",
        )
        if (dest / ".config").exists() or (dest / "include/config").exists():
            # The user builds in place; kbuild refuses O= builds from such a
            # tree. Clean our copy (never theirs).
            proc.run(["make", "-s", "-C", dest, "mrproper"], timeout=600,
                     log_path=log_dir / "copy-tree.log", error=BuildError,
                     what="make mrproper in the private copy")
        key = f"tree-{name}-{_tree_fingerprint(dest)}"
    return KernelSource(key, dest, f"kernel tree {tree}", group=f"tree-{name}")


def _tree_fingerprint(root: Path) -> str:
    """Names a tree's content by every file's path, size and mtime (cheap)."""
    parts = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            st = p.lstat()
            parts.append(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}")
    return cache.digest(parts)[:16]


# --- patches -----------------------------------------------------------------

_HEADER_RE = re.compile(r"^--- (\S+).*\n\+\+\+ (\S+)", re.MULTILINE)


def _strip1(path: str) -> str:
    """What `patch -p1` does to a header path: drop the first component."""
    return path.split("/", 1)[1] if "/" in path else path


def patch_targets(patch: Path) -> list[str]:
    """Files a unified diff touches, relative to the tree root (as with -p1).

    Both header lines count: a deleted file has only its `---` name, and
    `diff -urN linux.orig/x linux/x` names the tree differently on each side.
    """
    targets = set()
    for old, new in _HEADER_RE.findall(patch.read_text(errors="replace")):
        for path in (old, new):
            if path != "/dev/null":
                targets.add(_strip1(path))
    return sorted(targets)


def _failing_hunks(output: str) -> str:
    """The lines of `patch` output that say which file and hunk failed."""
    current = ""
    found = []
    for line in output.splitlines():
        if line.startswith(("patching file ", "checking file ")):
            current = line.split(" ", 2)[2]
        elif "FAILED" in line or "malformed" in line or "can't find file" in line.lower():
            found.append(f"{current}: {line.strip()}" if current else line.strip())
    return "\n".join(found) or output.strip()[-2000:]


def apply_patches(tree: Path, patches: Sequence[Path], log_path: Path) -> list[str]:
    """Apply `patches` in order to `tree`, all or nothing.

    Originals are saved first; on any failure the tree is put back and a
    PatchError names the patch file and the hunk. Returns the touched files.
    """
    restore_tree(tree)
    targets = sorted({t for p in patches for t in patch_targets(p)})
    backup = tree / ".lab-backup"
    shutil.rmtree(backup, ignore_errors=True)
    saved = []
    for rel in targets:
        src = tree / rel
        if src.exists():
            dst = backup / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            saved.append(rel)
    cache.write_json(tree / STATE_FILE, {"targets": targets, "saved": saved})
    for patch in patches:
        result = proc.run(
            ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-r", "-",
             "-i", patch.resolve()],
            cwd=tree,
            timeout=120,
            log_path=log_path,
            check=False,
        )
        if not result.ok:
            restore_tree(tree)
            raise PatchError(
                f"patch {patch} does not apply",
                log_path=log_path,
                excerpt=_failing_hunks(result.stdout),
            )
    return targets


def restore_tree(tree: Path) -> None:
    """Take applied patches out again (also after a crash mid-build)."""
    state_path = tree / STATE_FILE
    if not state_path.exists():
        return
    state = json.loads(state_path.read_text())
    backup = tree / ".lab-backup"
    for rel in state["targets"]:
        dst = tree / rel
        if rel in state["saved"]:
            shutil.copyfile(backup / rel, dst)
        elif dst.exists():
            dst.unlink()  # the patch created it
    shutil.rmtree(backup, ignore_errors=True)
    state_path.unlink()


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
        return _from_meta(variant, art, cached=True)
    require_tools(BUILD_TOOLS)
    log_path = log_dir / f"build-{variant.build_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    start = time.monotonic()
    tree = variant.source.path
    with cache.locked(cache_root / "locks" / f"src-{variant.source.build_group}.lock"):
        if meta_path.is_file():  # another lab process built it while we waited
            return _from_meta(variant, art, cached=True)
        bdir = _build_dir(variant, cache_root)
        touched = apply_patches(tree, variant.patches, log_path)
        with contextlib.ExitStack() as stack:
            stack.callback(restore_tree, tree)
            _mark_stale(tree, bdir, touched)
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
                "# rebuild this variant by hand (patches applied to the tree first):\n"
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
        shutil.copy2(bdir / ".config", staging / "config")
        shutil.copy2(log_path, staging / "build.log")
        seconds = time.monotonic() - start
        cache.write_json(staging / "meta.json", {
            "variant": variant.name,
            "release": release,
            "sha256": cache.file_sha256(staging / "bzImage"),
            "seconds": seconds,
            "source": variant.source.description,
            "patches": [str(p) for p in variant.patches],
            "fragments": [str(f) for f in variant.fragments],
            "compiler": compiler_version(),
            "build_dir": str(bdir),
        })
        cache.publish_dir(staging, art)
        (bdir / ".lab-ok").write_text(key + "\n")
    built = _from_meta(variant, art, cached=False)
    return KernelBuild(**{**built.__dict__, "seconds": seconds, "log": log_path})


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
    siblings = sorted(
        (d for d in group.glob("*") if d.name != WORK_DIR and (d / ".lab-ok").exists()),
        key=lambda d: (d / ".lab-ok").stat().st_mtime,
        reverse=True,
    )
    if siblings:
        proc.run(["cp", "-a", "--reflink=auto", siblings[0], bdir], timeout=900,
                 error=BuildError, what=f"seeding {bdir.name} from {siblings[0].name}")
        (bdir / ".lab-ok").unlink()
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
    """tinyconfig + fragments (merge_config.sh) + olddefconfig, then verify."""
    common = ["make", "-C", tree, f"O={bdir}"]
    proc.run([*common, "tinyconfig"], timeout=600, log_path=log_path, error=BuildError,
             what="make tinyconfig")
    proc.run(
        [tree / "scripts/kconfig/merge_config.sh", "-m", "-O", bdir, bdir / ".config",
         *variant.fragments],
        cwd=tree, timeout=300, log_path=log_path, error=BuildError, what="merge_config.sh",
    )
    proc.run([*common, "olddefconfig"], timeout=600, log_path=log_path, error=BuildError,
             what="make olddefconfig")
    problems = unmet_options(variant.fragments, (bdir / ".config").read_text())
    if problems:
        raise ConfigError(
            f"{len(problems)} config option(s) did not stick after olddefconfig "
            "(a missing dependency or a misspelt symbol):",
            excerpt="\n".join(problems),
            log_path=log_path,
        )
