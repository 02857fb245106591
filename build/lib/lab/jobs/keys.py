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
from lab.kernel import build, gittree, sources
from lab.kernel.series import load_series
from lab.vm import image


@dataclass(frozen=True)
class CacheKey:
    key: str
    restore_prefix: str  # an older cache for the same kernel source still helps
    inputs: dict[str, str]

    def lines(self) -> list[str]:
        """`name=value` lines: GitHub's $GITHUB_OUTPUT format, and plain to read."""
        return [f"key={self.key}", f"restore-prefix={self.restore_prefix}",
                *(f"input-{k}={v}" for k, v in self.inputs.items())]

    def to_dict(self) -> dict:
        return {"key": self.key, "restore_prefix": self.restore_prefix, "inputs": self.inputs}


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


def cache_key(cfg: LabConfig, patches: tuple[Path, ...] = (), debug: bool = False) -> CacheKey:
    """The cache key for the variants of `cfg`'s series (plus `patches`)."""
    for p in patches:
        if not p.is_file():
            raise ConfigError(f"--patch {p}: no such file")
    fragments = list(cfg.fragments) + ([cfg.debug_fragment] if debug else [])
    source = source_id(cfg)
    inputs = {
        "kernel-source": source,
        "compiler": build.compiler_version(),
        "build-recipe": build.RECIPE_VERSION,
        "series": _files_digest([cfg.series]),
        "config-fragments": _files_digest(fragments),
        "image-recipe": image.recipe_key(cfg.image_recipe)[:16],
        "guest-programs": _files_digest([GUEST_SRC]),
    }
    if patches:
        inputs["user-patches"] = _files_digest(list(patches))
    prefix = f"kernel-lab-{source}-"
    digest = cache.digest([f"{k}={v}" for k, v in inputs.items()])[:24]
    return CacheKey(prefix + digest, prefix, inputs)
