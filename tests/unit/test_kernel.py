"""Patches, config checks and cache keys, on tiny real trees (no kernel build)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lab.errors import ConfigError, PatchError
from lab.kernel import build, gittree, patching, variants
from lab.kernel.build import KernelSource, Variant

GOOD = """\
--- a/fs/demo.c
+++ b/fs/demo.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+int b_changed;
 int c;
--- /dev/null
+++ b/fs/new.c
@@ -0,0 +1 @@
+int created;
"""

BAD = """\
--- a/fs/other.c
+++ b/fs/other.c
@@ -1,2 +1,2 @@
 int x;
-int this_line_is_not_there;
+int y;
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "fs").mkdir(parents=True)
    (root / "fs/demo.c").write_text("int a;\nint b;\nint c;\n")
    (root / "fs/other.c").write_text("int x;\nint z;\n")
    build.make_source_tree(root)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def test_the_real_series_touch_only_the_fuse_files(tmp_path):
    """Every patch of every shipped series touches fs/fuse and the uapi header only."""
    for folder in (Path(__file__).resolve().parents[2] / "patches").iterdir():
        for patch in folder.glob("*.patch"):
            pieces, _ = patching.read_pieces(patch)
            for piece in pieces:
                names = {ln.split()[1][2:] for ln in piece.diff.splitlines()
                         if ln.startswith("+++ ") and "/dev/null" not in ln}
                assert names <= {"fs/fuse/file.c", "fs/fuse/iomode.c", "fs/fuse/fuse_i.h",
                                 "include/uapi/linux/fuse.h"}, (patch, names)


def test_apply_then_restore_gives_back_the_pristine_tree(tree, tmp_path):
    before = _snapshot(tree)
    good = tmp_path / "good.patch"
    good.write_text(GOOD)
    result = build.apply_patches(tree, [good], tmp_path / "log")
    assert result.touched == ("fs/demo.c", "fs/new.c")
    assert [a.fuzz for a in result.applied] == [0]
    assert "b_changed" in (tree / "fs/demo.c").read_text()
    assert (tree / "fs/new.c").exists()
    build.restore_tree(tree)
    assert _snapshot(tree) == before
    assert gittree.dirty(tree) == []


def test_patch_that_does_not_apply_names_file_and_hunk_and_leaves_tree_pristine(tree, tmp_path):
    before = _snapshot(tree)
    good, bad = tmp_path / "good.patch", tmp_path / "bad.patch"
    good.write_text(GOOD)
    bad.write_text(BAD)
    with pytest.raises(PatchError) as info:
        build.apply_patches(tree, [good, bad], tmp_path / "log")
    err = info.value
    assert str(bad) in str(err)
    assert "fs/other.c: hunk #1 (@@ -1,2 +1,2 @@) does not apply" in err.excerpt
    assert err.exit_code == 2
    assert _snapshot(tree) == before  # the good patch was taken out again
    assert gittree.dirty(tree) == []


def test_restore_after_a_crash_mid_build(tree, tmp_path):
    """A lab process killed between apply and restore: the next apply recovers."""
    before = _snapshot(tree)
    good = tmp_path / "good.patch"
    good.write_text(GOOD)
    build.apply_patches(tree, [good], tmp_path / "log")
    (tree / "fs/stray.o").write_text("left by a killed build")
    build.apply_patches(tree, [good], tmp_path / "log")  # would fail if not restored first
    assert not (tree / "fs/stray.o").exists()
    build.restore_tree(tree)
    assert _snapshot(tree) == before


def test_unmet_options_name_the_symbol(tmp_path):
    frag = tmp_path / "x.config"
    frag.write_text("CONFIG_FUSE_FS=y\n# CONFIG_MODULES is not set\nCONFIG_NOT_A_SYMBOL=y\n")
    final = "CONFIG_FUSE_FS=y\n# CONFIG_MODULES is not set\n"
    problems = build.unmet_options([frag], final)
    assert len(problems) == 1
    assert "CONFIG_NOT_A_SYMBOL=y" in problems[0] and "x.config" in problems[0]


def test_parse_config_reads_values_and_unset_lines():
    cfg = build.parse_config('CONFIG_A=y\nCONFIG_S="x y"\n# CONFIG_B is not set\n# comment\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_S": '"x y"', "CONFIG_B": "n"}


def test_variant_key_covers_every_input(tmp_path):
    src = KernelSource("debian-1", tmp_path, "test")
    p1, p2, frag = tmp_path / "a.patch", tmp_path / "b.patch", tmp_path / "f.config"
    p1.write_text("one")
    p2.write_text("two")
    frag.write_text("CONFIG_A=y\n")
    v = Variant("x", src, (p1,), (frag,))
    assert v.key() == Variant("renamed", src, (p1,), (frag,)).key()  # names don't matter
    assert v.key() != dataclasses.replace(v, patches=(p2,)).key()
    assert v.key() != dataclasses.replace(v, patches=(p1, p2)).key()
    assert v.key() != dataclasses.replace(v, source=KernelSource("debian-2", tmp_path, "")).key()
    frag2 = tmp_path / "g.config"
    frag2.write_text("CONFIG_A=n\n")
    assert v.key() != dataclasses.replace(v, fragments=(frag2,)).key()
    before = v.key()
    p1.write_text("one, edited")  # the same file, new bytes: a new key
    assert v.key() != before


def test_a_deleting_patch_is_restored(tree, tmp_path):
    before = _snapshot(tree)
    delete = tmp_path / "delete.patch"
    delete.write_text("--- a/fs/other.c\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-int x;\n-int z;\n")
    build.apply_patches(tree, [delete], tmp_path / "log")
    assert not (tree / "fs/other.c").exists()
    build.restore_tree(tree)
    assert _snapshot(tree) == before


def test_a_cached_build_made_with_fuzz_is_refused_under_strict(tmp_path):
    art = tmp_path / "kernels" / "k1"
    art.mkdir(parents=True)
    (art / "meta.json").write_text(json.dumps({
        "sha256": "0" * 64, "release": "6.x", "seconds": 1.0, "source": "test",
        "applied": [{"file": "v1.patch", "index": 1, "subject": "s", "fuzz": 2, "notes": []}]}))
    variant = Variant("v1", KernelSource("debian-1", tmp_path, "test"), (), ())
    built = build._from_meta(variant, art, cached=True)
    assert built.fuzz == ['v1.patch [1] "s": fuzz 2']
    assert build._checked(variant, built) is built
    with pytest.raises(PatchError, match="--strict refuses fuzz"):
        build._checked(dataclasses.replace(variant, strict=True), built)


def test_the_base_config_is_in_the_build_key_but_tinyconfig_keeps_the_old_keys(tmp_path):
    """--kconfig: a make target or the user's .config changes the key (and the
    build folder); the default tinyconfig adds nothing, so kernels cached
    before it could be chosen keep their keys."""
    src = KernelSource("debian-1", tmp_path, "test")
    frag = tmp_path / "guest.config"
    frag.write_text("CONFIG_FUSE_FS=y\n")
    mine = tmp_path / "my.config"
    mine.write_text("CONFIG_SMP=y\n")
    tiny = Variant("v", src, (), (frag,))
    keys = {tiny.key(), dataclasses.replace(tiny, base_config="defconfig").key(),
            dataclasses.replace(tiny, base_config=mine).key()}
    assert len(keys) == 3
    assert dataclasses.replace(tiny, base_config="tinyconfig").key() == tiny.key()
    assert dataclasses.replace(tiny, base_config="defconfig").config_key() != tiny.config_key()
    mine.write_text("CONFIG_SMP=n\n")  # the file's content, not its name, is the input
    assert dataclasses.replace(tiny, base_config=mine).key() not in keys


@pytest.mark.parametrize("given, error", [
    ("nope", "not a make target"), ("./missing.config", "no such file"),
    ("kvm_guest.config", "not a make target")])
def test_a_bad_kconfig_is_named(given, error):
    with pytest.raises(ConfigError, match=error):
        variants.base_config(given)


def test_kconfig_takes_a_file_or_a_make_target(tmp_path):
    mine = tmp_path / ".config"
    mine.write_text("CONFIG_SMP=y\n")
    assert variants.base_config(str(mine)) == mine.resolve()
    assert variants.base_config("defconfig") == "defconfig"
    assert variants.base_config(None) == "tinyconfig"
