"""Real kernel builds: baseline and patched, caching, bad patches, bad configs."""

from __future__ import annotations

import dataclasses
import difflib
import time
from pathlib import Path

import pytest

from lab import pipeline
from lab.errors import BuildError, ConfigError, PatchError
from lab.kernel import build, gittree
from lab.kernel.build import Variant

pytestmark = [pytest.mark.build, pytest.mark.timeout(1800)]


def _patched_copy(source, patches, dest: Path, cache_root: Path) -> str:
    """fs/fuse/file.c as a variant's patches leave it (on a copy, not the cache)."""
    return build.files_after(patches, source, ["fs/fuse/file.c", "include/uapi/linux/fuse.h"],
                              dest, cache_root=cache_root)["fs/fuse/file.c"]


def _pristine(source) -> bool:
    """The cached source is exactly its commit: nothing changed, added or left behind."""
    return gittree.head(source.path) == source.commit and gittree.dirty(source.path) == []


def _function(text: str, name: str) -> str:
    start = text.index(f"static ssize_t {name}(")
    return text[start:text.index("\n}\n", start)]


def test_baseline_and_patched_differ_exactly_in_the_write_locking(builds, lab_cfg, logs,
                                                                  tmp_path):
    base, patched = builds["baseline"], builds["patched"]
    assert base.bzimage.is_file() and patched.bzimage.is_file()
    assert base.sha256 != patched.sha256 and base.release != patched.release
    variants = pipeline.resolve_variants(
        lab_cfg, pipeline.VariantRequest(("baseline", "patched")), logs)
    texts = {v.name: _patched_copy(v.source, v.patches, tmp_path / v.name,
                                   lab_cfg.cache_root)
             for v in variants}
    changed = [ln for ln in difflib.unified_diff(texts["baseline"].splitlines(),
                                                 texts["patched"].splitlines(), n=0)
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    body_base = _function(texts["baseline"], "fuse_direct_write_iter")
    body_patched = _function(texts["patched"], "fuse_direct_write_iter")
    assert "inode_lock_shared" not in body_base and "inode_lock(inode)" in body_base
    assert "inode_lock_shared" in body_patched and "FOPEN_PARALLEL_DIRECT_WRITES" in body_patched
    # Every changed line belongs to the write path's locking: the function
    # itself or the extending-write helper it uses.
    helper = texts["patched"][texts["patched"].index("static bool fuse_direct_write_extending"):]
    for line in changed:
        assert line[1:] in body_base or line[1:] in body_patched or line[1:] in helper, line
    # ...and the source copy in the cache is pristine again.
    assert "inode_lock_shared" in _function(
        (variants[0].source.path / "fs/fuse/file.c").read_text(), "fuse_direct_write_iter")


def test_a_second_build_of_the_same_inputs_is_a_cache_hit(builds, lab_cfg, logs):
    variants = pipeline.resolve_variants(
        lab_cfg, pipeline.VariantRequest(("baseline", "patched")), logs)
    start = time.monotonic()
    again = [build.build(v, lab_cfg.cache_root, logs) for v in variants]
    assert all(b.cached for b in again)
    assert [b.sha256 for b in again] == [builds["baseline"].sha256, builds["patched"].sha256]
    assert time.monotonic() - start < 60  # generous: a hit reads one small JSON file


def test_a_patch_that_does_not_apply_names_file_and_hunk(builds, lab_cfg, logs, tmp_path):
    bad = tmp_path / "stale.patch"
    bad.write_text(
        "--- a/fs/fuse/file.c\n+++ b/fs/fuse/file.c\n@@ -1,3 +1,3 @@\n"
        " this context\n-is not in\n+the kernel\n anywhere\n")
    with pytest.raises(PatchError) as info:
        variants = pipeline.resolve_variants(
            lab_cfg, pipeline.VariantRequest(("user",), patches=(bad,)), logs)
        build.build(variants[0], lab_cfg.cache_root, logs)
    assert str(bad) in str(info.value)
    assert "fs/fuse/file.c: hunk #1 (@@ -1,3 +1,3 @@) does not apply" in info.value.excerpt
    # Nothing half-patched is left behind: the next build still works (cache hit).
    variant = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    assert _pristine(variant.source)
    assert build.build(variant, lab_cfg.cache_root, logs).sha256 == builds["baseline"].sha256


def test_a_config_option_that_does_not_stick_is_named(builds, lab_cfg, logs, tmp_path):
    frag = tmp_path / "broken.config"
    frag.write_text("CONFIG_FUSE_FS=y\nCONFIG_LAB_NO_SUCH_OPTION=y\n")
    base = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    broken = Variant("broken", base.source, base.patches, (*base.fragments, frag))
    with pytest.raises(ConfigError) as info:
        build.build(broken, lab_cfg.cache_root, logs)
    assert "CONFIG_LAB_NO_SUCH_OPTION=y" in info.value.excerpt
    assert _pristine(base.source)


def test_a_compiler_error_gives_the_log_tail_and_path(builds, lab_cfg, logs, tmp_path):
    base = pipeline.resolve_variants(lab_cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    lines = (base.source.path / "fs/fuse/control.c").read_text().splitlines()
    n = len(lines)
    broken = tmp_path / "broken.patch"
    broken.write_text(
        f"--- a/fs/fuse/control.c\n+++ b/fs/fuse/control.c\n@@ -{n - 2},3 +{n - 2},4 @@\n"
        + "".join(f" {line}\n" for line in lines[-3:]) + "+this is not C;\n")
    variants = pipeline.resolve_variants(
        lab_cfg, pipeline.VariantRequest(("user",), patches=(broken,)), logs)
    with pytest.raises(BuildError) as info:
        build.build(variants[0], lab_cfg.cache_root, logs)
    assert info.value.exit_code == 3
    assert "control.c" in info.value.excerpt and "error" in info.value.excerpt
    assert info.value.log_path and info.value.log_path.is_file()
    assert _pristine(base.source)


# --- the 6.12 series ---------------------------------------------------------------

SERIES_612 = Path(__file__).resolve().parents[2] / "patches/fuse-parallel-dio-6.12"
ALL_SERIES = sorted(SERIES_612.parent.glob("*/series.toml"))


@pytest.mark.parametrize("manifest", ALL_SERIES, ids=lambda p: p.parent.name)
def test_every_shipped_version_applies_to_its_source_without_fuzz(manifest, lab_cfg, logs,
                                                                  tmp_path):
    cfg = dataclasses.replace(lab_cfg, series=manifest.parent)
    series = pipeline.series_of(cfg)
    base = pipeline.resolve_variants(cfg, pipeline.VariantRequest(("baseline",)), logs)[0]
    rels = ["fs/fuse/file.c", "include/uapi/linux/fuse.h"]
    without = build.files_after([series.baseline], base.source, rels, tmp_path / "base",
                                 cache_root=cfg.cache_root, strict=True)
    for version in series.versions:
        files = build.files_after([series.baseline, version.patch], base.source, rels,
                                   tmp_path / version.name, cache_root=cfg.cache_root,
                                   strict=True)
        assert files["fs/fuse/file.c"] != without["fs/fuse/file.c"], version.name
    assert _pristine(base.source)


@pytest.fixture(scope="module")
def builds_612(lab_cfg, logs, ui):
    cfg = dataclasses.replace(lab_cfg, series=SERIES_612)
    vs = pipeline.resolve_variants(cfg, pipeline.VariantRequest(("baseline", "patched")), logs)
    return vs, {b.variant: b for b in pipeline.build_variants(cfg, vs, logs, ui)}


def test_612_baseline_and_stock_build_and_the_mbox_is_recorded(builds_612, lab_cfg, tmp_path):
    vs, builds = builds_612
    base, stock = builds["baseline"], builds["patched"]
    assert base.release.startswith("6.12.") and stock.release.startswith("6.12.")
    assert base.sha256 != stock.sha256
    assert base.features == ("direct-io-allow-mmap", "iomode-exclusive-cached")
    assert set(stock.features) == {"parallel-direct-writes", "iomode-exclusive-cached",
                                   "direct-io-allow-mmap"}
    # The newest version is an mbox: a cover letter and two patches, applied in order.
    assert [a["subject"] for a in stock.applied] == [
        "[PATCH] fuse: take the exclusive inode lock for every direct write (lab baseline)",
        "[PATCH 6.12 1/2] fuse: allow non-extending parallel direct writes on the same file",
        "[PATCH 6.12 2/2] fuse: no parallel direct writes while the inode is in caching I/O "
        "mode"]
    assert [a["fuzz"] for a in stock.applied] == [0, 0, 0]
    assert stock.cover_letters[0]["subject"].startswith("[PATCH 6.12 0/2]")
    assert stock.to_dict()["cover_letters"] == list(stock.cover_letters)
    # Baseline plus the stock mbox is Debian's 6.12 exactly.
    source = vs[1].source
    stock_file = _patched_copy(source, vs[1].patches, tmp_path / "stock", lab_cfg.cache_root)
    assert stock_file == (source.path / "fs/fuse/file.c").read_text()
    base_file = _patched_copy(source, vs[0].patches, tmp_path / "base", lab_cfg.cache_root)
    assert "inode_lock_shared" not in base_file
    assert _pristine(source)
