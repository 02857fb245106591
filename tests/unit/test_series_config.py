"""The series manifest, variant names and lab.toml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import config, variants
from lab.errors import ConfigError
from lab.kernel import KernelSource
from lab.series import load_series

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def series():
    return load_series(REPO / "patches/fuse-parallel-dio")


def test_the_shipped_series(series):
    assert [v.name for v in series.versions] == ["v1", "v2", "v3", "v4", "v5"]
    assert series.newest == "v5"
    assert series.baseline.name == "baseline.patch"
    assert all(v.features == ("parallel-direct-writes",) for v in series.versions)


def _write_series(folder: Path, body: str) -> Path:
    folder.mkdir()
    (folder / "a.patch").write_text("--- a/x\n+++ b/x\n")
    (folder / "series.toml").write_text(body)
    return folder


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="missing file"):
        load_series(_write_series(tmp_path / "s1", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="nope.patch"\n'))
    with pytest.raises(ConfigError, match="unknown feature"):
        load_series(_write_series(tmp_path / "s2", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="a.patch"\nfeatures=["telepathy"]\n'))
    with pytest.raises(ConfigError, match="repeat"):
        load_series(_write_series(tmp_path / "s3", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="a.patch"\n[[version]]\nname="v1"\nfile="a.patch"\n'))
    with pytest.raises(ConfigError, match="not a patch series"):
        load_series(tmp_path)


def test_variant_resolution(series, tmp_path):
    cfg = config.LabConfig()
    src = KernelSource("k", tmp_path, "test")
    vs = variants.resolve(["baseline", "v2", "patched"], cfg=cfg, series=series, source=src)
    assert [v.name for v in vs] == ["baseline", "v2", "patched"]
    assert vs[0].patches == (series.baseline,) and vs[0].features == ()
    assert vs[1].patches == (series.baseline, series.version("v2").patch)
    assert vs[2].patches[-1] == series.version("v5").patch
    assert vs[2].key() == variants.resolve(["v5"], cfg=cfg, series=series, source=src)[0].key()
    with pytest.raises(ConfigError, match="unknown variant 'v9'"):
        variants.resolve(["v9"], cfg=cfg, series=series, source=src)
    mine = tmp_path / "mine.patch"
    mine.write_text("x")
    user = variants.resolve([], cfg=cfg, series=series, source=src, user_patches=[mine],
                            expect=["parallel-direct-writes"])
    assert [v.name for v in user] == ["baseline", "user"]
    assert user[1].patches == (series.baseline, mine)
    assert user[1].features == ("parallel-direct-writes",)
    debug = variants.resolve(["baseline"], cfg=cfg, series=series, source=src, debug=True)[0]
    assert debug.fragments[-1] == cfg.debug_fragment and debug.build_name == "baseline-debug"


def test_split_names():
    assert variants.split_names(["a,b", "c", "a"]) == ["a", "b", "c"]


def test_lab_toml_errors_name_the_key(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text("[vm]\nvcpu = 4\n")
    with pytest.raises(ConfigError, match="unknown key `vcpu`"):
        config.load(path)
    path.write_text("[vm]\naccel = 'fast'\n")
    with pytest.raises(ConfigError, match="accel"):
        config.load(path)
    path.write_text("[bench]\njobs = 'many'\n")
    with pytest.raises(ConfigError, match="`jobs` must be a list"):
        config.load(path)
    path.write_text("[vm]\nvcpus = 4\nboot_timeout_s = 30\n[bench]\njobs = [1, 2]\n")
    cfg = config.load(path)
    assert cfg.vm.vcpus == 4 and cfg.vm.boot_timeout_s == 30 and cfg.bench.jobs == (1, 2)
