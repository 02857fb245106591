"""The cache key CI saves the lab's cache under: every build-key input moves it."""

from __future__ import annotations

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
