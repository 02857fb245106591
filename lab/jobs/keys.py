"""What decides the lab's cached artifacts, computed without building anything.

A kernel's build key hashes the build recipe's version, the kernel source,
the compiler's version, the patches and the config fragments; the image's
key hashes its recipe; the guest programs' key hashes their sources and the
image. `cache_key` names all of them in one string, cheaply (no unpacking,
no build), so a CI cache saved under it is refreshed whenever any of them
changes, and `reproduce.sh` can say which of them changed since a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.config import LabConfig
from lab.errors import ConfigError
from lab.guest.workloads import GUEST_SRC
from lab.host import cache, proc
from lab.kernel import build, gittree, sources, variants
from lab.kernel.series import load_series
from lab.pipeline import VariantRequest
from lab.vm import image


@dataclass(frozen=True)
class CacheKey:
    key: str
    restore_prefix: str  # an older cache for the same kernel source still helps
    inputs: dict[str, str]
    # A tree's A/B: any older cache of the same settings (another base) still
    # holds build folders, so both sides rebuild incrementally.
    restore_any: str = ""
    # The guest image and programs, cached apart: they change with neither side.
    image_key: str = ""
    # What a CI cache of a tree's A/B holds: the private clone (its checkout's
    # timestamps keep the builds incremental) and the build folders.
    folders: tuple[Path, ...] = ()
    image_folders: tuple[Path, ...] = ()

    def lines(self) -> list[str]:
        """`name=value` lines: GitHub's $GITHUB_OUTPUT format, and plain to read."""
        return [f"key={self.key}", f"restore-prefix={self.restore_prefix}",
                *([f"restore-any={self.restore_any}"] if self.restore_any else []),
                *([f"image-key={self.image_key}"] if self.image_key else []),
                *(f"folder={f}" for f in self.folders),
                *(f"image-folder={f}" for f in self.image_folders),
                *(f"input-{k}={v}" for k, v in self.inputs.items())]

    def to_dict(self) -> dict:
        out = {"key": self.key, "restore_prefix": self.restore_prefix}
        out |= {"restore_any": self.restore_any} if self.restore_any else {}
        out |= {"image_key": self.image_key} if self.image_key else {}
        out |= {"folders": [str(f) for f in self.folders]} if self.folders else {}
        out |= ({"image_folders": [str(f) for f in self.image_folders]}
                if self.image_folders else {})
        return {**out, "inputs": self.inputs}


def _run(argv: list[str], cwd: Path | None = None) -> proc.CommandResult:
    return proc.capture(argv, timeout=60, cwd=cwd)  # a quick query (dpkg, git)


def source_id(cfg: LabConfig) -> str:
    """The kernel source the series builds from, named by version or commit."""
    spec = load_series(cfg.series).source  # series.toml must name it (lab.series)
    kind, name, ref = spec.kind, spec.name, spec.ref
    if kind == "debian":
        return f"debian-{sources.debian_version(name)}"
    out = gittree.query(Path(name), "rev-parse", "--verify", f"{ref}^{{commit}}")
    if out.exit_status != 0:
        raise ConfigError(f"kernel source {name} at {ref}: not a revision of a git repository")
    return f"git-{out.stdout.strip()[:16]}"


def _files_digest(paths: list[Path]) -> str:
    files = sorted(p for path in paths
                   for p in ([path] if path.is_file() else sorted(path.rglob("*")))
                   if p.is_file())
    return cache.digest([b"%s\0%s" % (p.name.encode(), p.read_bytes()) for p in files])[:16]


def _lab_fragments(cfg: LabConfig, debug: bool) -> list[Path]:
    return list(cfg.fragments) + ([cfg.debug_fragment] if debug else [])


def _image_inputs(cfg: LabConfig) -> dict[str, str]:
    return {"image-recipe": image.recipe_key(cfg.image_recipe)[:16],
            "guest-programs": _files_digest([GUEST_SRC])}


def cache_key(cfg: LabConfig, patches: tuple[Path, ...] = (), debug: bool = False) -> CacheKey:
    """The cache key for the variants of `cfg`'s series (plus `patches`)."""
    for p in patches:
        if not p.is_file():
            raise ConfigError(f"--patch {p}: no such file")
    source = source_id(cfg)
    inputs = {
        "kernel-source": source,
        "compiler": build.compiler_version(),
        "build-recipe": build.RECIPE_VERSION,
        "series": _files_digest([cfg.series]),
        "config-fragments": _files_digest(_lab_fragments(cfg, debug)),
        **_image_inputs(cfg),
    }
    if patches:
        inputs["user-patches"] = _files_digest(list(patches))
    prefix = f"kernel-lab-{source}-"
    digest = cache.digest([f"{k}={v}" for k, v in inputs.items()])[:24]
    return CacheKey(prefix + digest, prefix, inputs)


def _head_id(tree: Path, head: str | None) -> str:
    """The head side as a build sees it: `head`'s commit, or the working tree's
    HEAD plus a digest of its uncommitted changes (tracked and untracked), the
    way lab.kernel.sources snapshots it."""
    if head:
        return gittree.rev_commit(tree, head, what="--head", error=ConfigError)
    commit = gittree.rev_commit(tree, "HEAD", what="--kernel-tree HEAD", error=ConfigError)
    # Not the ./results the lab writes when run from inside the tree; -z: a
    # path with spaces or quotes comes as it is.
    status = gittree.query(tree, "status", "--porcelain", "-z", "--untracked-files=all", "--",
                           ".", f":(exclude){sources.RESULTS_DIR}/").stdout
    if not status.strip("\0"):
        return commit
    diff = gittree.query(tree, "diff", "--binary", "HEAD").stdout
    untracked = sorted(entry[3:] for entry in status.split("\0") if entry.startswith("?? "))
    parts = [diff, *(b"%s\0%s" % (rel.encode(), (tree / rel).read_bytes())
                     for rel in untracked if (tree / rel).is_file())]
    return f"{commit[:16]}+{cache.digest(parts)[:12]}"


def tree_cache_key(cfg: LabConfig, tree: Path, base: str | None, head: str | None,
                   kconfig: str | Path, fragments: tuple[Path, ...] = (),
                   debug: bool = False, patches: tuple[Path, ...] = ()) -> CacheKey:
    """The cache key of an A/B of `tree` (`lab test --kernel-tree TREE --base
    BASE [--head HEAD]`): exact for the pair, with two fall-backs for
    actions/cache's restore-keys: the same base (its kernel is cached: only the
    head builds, incrementally) and the same settings (build folders of an
    older pair: both sides incremental). The image has a key of its own.

    Not in it: the config fragments the tree's own tests add (--kselftest,
    --kunit), which `lab build` does not take; a changed choice of them within
    one pair is an exact hit whose kernels then build again, unsaved."""
    tree = tree.expanduser().resolve()
    if not gittree.is_repo(tree):
        raise ConfigError(f"--kernel-tree {tree}: not a git repository (no .git folder)")
    # No --base: the tree alone (variant `tree`), keyed like a base-less pair.
    base_commit = (gittree.rev_commit(tree, base, what="--base", error=ConfigError) if base
                   else "none")
    own = _lab_fragments(cfg, debug) + list(fragments)
    config = (f"file-{cache.file_sha256(kconfig)[:16]}" if isinstance(kconfig, Path)
              else kconfig)
    settings = {
        "compiler": build.compiler_version(),
        "build-recipe": build.RECIPE_VERSION,
        "base-config": config,
        "config-fragments": _files_digest(own),
    }
    if patches:
        settings["user-patches"] = _files_digest(list(patches))
    sides = {"base": base_commit, "head": _head_id(tree, head)}
    image_inputs = _image_inputs(cfg)
    prefix = f"kernel-lab-tree-{cache.digest([f'{k}={v}' for k, v in settings.items()])[:16]}-"
    by_base = f"{prefix}{base_commit[:16]}-"
    group = sources.clone_group(tree)
    return CacheKey(
        key=by_base + (sides["head"] if "+" in sides["head"] else sides["head"][:16]),
        restore_prefix=by_base, restore_any=prefix,
        image_key="kernel-lab-image-" + "-".join(image_inputs.values()),
        folders=(cfg.cache_root / "src" / group, cfg.cache_root / "build" / group),
        image_folders=(cfg.cache_root / "images", cfg.cache_root / "guest-bin"),
        inputs={**sides, **settings, **image_inputs})


def for_request(cfg: LabConfig, req: VariantRequest) -> CacheKey:
    """`lab build --print-cache-key`: a tree's A/B key when a kernel tree is
    under test, else the series' key."""
    if req.kernel_tree is None:
        return cache_key(cfg, req.patches, req.debug)
    return tree_cache_key(cfg, req.kernel_tree, req.base, req.head,
                          variants.base_config(req.kconfig),
                          variants.extra_fragments(req.fragments), req.debug, req.patches)
