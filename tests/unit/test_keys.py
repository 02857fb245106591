"""The cache key CI saves the lab's cache under: every build-key input moves it."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from lab import config
from lab.jobs import keys


def test_every_input_is_named_and_a_changed_fragment_changes_the_key(tmp_path: Path):
    cfg = config.load(None)
    base = keys.cache_key(cfg)
    assert base.key.startswith(base.restore_prefix)
    assert base.restore_prefix == f"kernel-lab-{base.inputs['kernel-source']}-"
    assert set(base.inputs) == {"kernel-source", "compiler", "build-recipe", "series",
                                "config-fragments", "image-recipe", "guest-programs"}
    assert keys.cache_key(cfg) == base  # deterministic

    fragment = tmp_path / "extra.config"
    fragment.write_text("CONFIG_PRINTK_TIME=y\n")
    changed = keys.cache_key(replace(cfg, fragments=(*cfg.fragments, fragment)))
    assert changed.key != base.key
    assert changed.restore_prefix == base.restore_prefix  # same source: restore the old one
    assert {k for k in base.inputs if base.inputs[k] != changed.inputs[k]} == {"config-fragments"}

    patch = tmp_path / "mine.patch"
    patch.write_text("--- a/x\n+++ b/x\n")
    with_patch = keys.cache_key(cfg, (patch,))
    assert with_patch.key != base.key and "user-patches" in with_patch.inputs
    assert keys.cache_key(cfg, debug=True).inputs["config-fragments"] != (
        base.inputs["config-fragments"])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev",
                           "-c", "user.email=dev@example.invalid", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_a_trees_key_names_the_pair_and_falls_back_to_its_base_then_its_settings(tmp_path):
    cfg = replace(config.load(None), cache_root=tmp_path / "cache")
    tree = tmp_path / "linux"
    (tree / "fs").mkdir(parents=True)
    (tree / "fs" / "file.c").write_text("int x;\n")
    _git(tree, "init", "-q", "-b", "main")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-qm", "base")
    base = _git(tree, "rev-parse", "HEAD")
    (tree / "fs" / "file.c").write_text("int y;\n")
    _git(tree, "commit", "-qam", "head")
    head = _git(tree, "rev-parse", "HEAD")

    clean = keys.tree_cache_key(cfg, tree, base, None, "tinyconfig")
    assert clean.inputs["base"] == base and clean.inputs["head"] == head
    assert clean.key == f"{clean.restore_prefix}{head[:16]}"
    assert clean.restore_prefix == f"{clean.restore_any}{base[:16]}-"
    assert [f.parent.name for f in clean.folders] == ["src", "build"]
    assert clean.folders[0].parent.parent == cfg.cache_root
    # The lab's own results in the tree are not the source; a changed file and an
    # untracked one (its name with a space) are, each on its own.
    (tree / "results").mkdir()
    (tree / "results" / "run.json").write_text("{}")
    assert keys.tree_cache_key(cfg, tree, base, None, "tinyconfig") == clean
    (tree / "fs" / "new file.c").write_text("int z;\n")
    untracked = keys.tree_cache_key(cfg, tree, base, None, "tinyconfig")
    assert untracked.inputs["head"].startswith(head[:16] + "+")
    assert untracked.restore_prefix == clean.restore_prefix and untracked.key != clean.key
    (tree / "fs" / "new file.c").write_text("int w;\n")
    assert keys.tree_cache_key(cfg, tree, base, None, "tinyconfig").key != untracked.key
    # Another config: another family; the same base's fall-back within it.
    other = keys.tree_cache_key(cfg, tree, base, "HEAD~1", "defconfig")
    assert other.restore_any != clean.restore_any and other.inputs["head"] == base
    assert other.image_key == clean.image_key
