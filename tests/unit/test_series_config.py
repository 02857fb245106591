"""The series manifest, variant names and lab.toml validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lab import config
from lab.errors import ConfigError
from lab.kernel import features, gittree, letter_figures, variants
from lab.kernel.build import KernelSource
from lab.kernel.series import KNOWN_FEATURES, load_series

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def series():
    return load_series(REPO / "patches/fuse-parallel-dio")


def test_the_shipped_series(series):
    assert [v.name for v in series.versions] == ["v1", "v2", "v3", "v4", "v5"]
    assert series.newest == "v5"
    assert series.baseline.name == "baseline.patch"
    assert all(v.features == ("parallel-direct-writes",) for v in series.versions)


def _write_series(folder: Path, body: str, source: str = 'source = "debian:linux-source-x"\n'
                  ) -> Path:
    folder.mkdir()
    (folder / "a.patch").write_text("--- a/x\n+++ b/x\n")
    (folder / "series.toml").write_text(source + body)
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
    with pytest.raises(ConfigError, match="`source` is required"):
        load_series(_write_series(tmp_path / "s4", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="a.patch"\n', source=""))
    with pytest.raises(ConfigError, match="expected \"debian:PACKAGE\""):
        load_series(_write_series(tmp_path / "s5", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="a.patch"\n', source='source = "linux-6.12"\n'))
    with pytest.raises(ConfigError, match="needs exactly `git`"):
        load_series(_write_series(tmp_path / "s6", 'name="s"\n[[version]]\nname="v1"\n'
                                  'file="a.patch"\n', source='source = { git = "/x" }\n'))
    with pytest.raises(ConfigError, match="unknown key.*sorce"):
        load_series(_write_series(tmp_path / "s7", 'sorce="x"\nname="s"\n[[version]]\n'
                                  'name="v1"\nfile="a.patch"\n'))
    with pytest.raises(ConfigError, match="unknown feature"):
        load_series(_write_series(tmp_path / "s8", 'name="s"\nbaseline_features=["x"]\n'
                                  '[[version]]\nname="v1"\nfile="a.patch"\n'))


def test_a_source_that_is_not_installed_says_what_to_install(tmp_path):
    folder = _write_series(tmp_path / "s", 'name="s"\n[[version]]\nname="v1"\nfile="a.patch"\n',
                           source='source = "debian:linux-source-0.0-not-a-package"\n')
    cfg = dataclasses.replace(config.LabConfig(), series=folder, cache_root=tmp_path / "cache")
    with pytest.raises(ConfigError) as info:
        variants.from_request(cfg, names=["baseline"], log_dir=tmp_path)
    assert "apt-get install linux-source-0.0-not-a-package" in str(info.value)
    assert info.value.exit_code == 2
    assert not (tmp_path / "cache").exists()  # nothing unpacked, nothing built


def test_variant_names_are_checked_before_the_source(tmp_path):
    folder = _write_series(tmp_path / "s", 'name="s"\n[[version]]\nname="v1"\nfile="a.patch"\n',
                           source='source = "debian:linux-source-0.0-not-a-package"\n')
    cfg = dataclasses.replace(config.LabConfig(), series=folder)
    with pytest.raises(ConfigError, match="unknown variant 'v7'"):
        variants.from_request(cfg, names=["v7"], log_dir=tmp_path)


def test_baseline_features_go_to_the_baseline_every_version_and_the_users_patch(tmp_path):
    folder = _write_series(tmp_path / "s", 'name="s"\nbaseline="a.patch"\n'
                           'baseline_features=["direct-io-allow-mmap"]\n[[version]]\n'
                           'name="v1"\nfile="a.patch"\nfeatures=["parallel-direct-writes"]\n')
    series = load_series(folder)
    tree = tmp_path / "tree"
    (tree / "fs" / "fuse").mkdir(parents=True)
    (tree / "fs" / "fuse" / "inode.c").write_text("if (flags & FUSE_DIRECT_IO_ALLOW_MMAP)\n")
    gittree.git(tree, "init", "-q")
    gittree.commit_all(tree, "a tree that implies direct-io-allow-mmap")
    src = KernelSource("k", tree, "test", commit=gittree.head(tree))
    mine = tmp_path / "mine.patch"
    mine.write_text("x")
    vs = variants.resolve(["baseline", "v1", "user"], cfg=config.LabConfig(), series=series,
                          source=src, user_patches=[mine], expect=["parallel-direct-writes"])
    # A version on top of the baseline keeps what the baseline has: dropping
    # it (a 6.12 version blind to I/O modes) is a bug the suite must see.
    assert [v.features for v in vs] == [
        ("direct-io-allow-mmap",), ("direct-io-allow-mmap", "parallel-direct-writes"),
        ("direct-io-allow-mmap", "parallel-direct-writes")]


def test_every_feature_has_a_meaning():
    assert set(features.FEATURES) == set(KNOWN_FEATURES)
    assert all(len(meaning) > 80 for meaning in features.FEATURES.values())


def test_ab_options_need_each_other(tmp_path):
    cfg = config.LabConfig()
    with pytest.raises(ConfigError, match="--head needs --base"):
        variants.from_request(cfg, names=[], log_dir=tmp_path, head="HEAD")
    with pytest.raises(ConfigError, match="--base needs --kernel-tree"):
        variants.from_request(cfg, names=[], log_dir=tmp_path, base="HEAD~1")


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
    with pytest.raises(ConfigError, match="jobs: must be a list"):
        config.load(path)
    path.write_text("[vm]\nvcpus = 4\nboot_timeout_s = 30\n[bench]\njobs = [1, 2]\n")
    cfg = config.load(path)
    assert cfg.vm.vcpus == 4 and cfg.vm.boot_timeout_s == 30 and cfg.bench.jobs == (1, 2)


def test_the_cover_letter_figures_are_the_series_data(series, tmp_path):
    """The 6.1 series ships its cover letter's figures; a run records them; a
    figures file that does not add up is refused when the series is loaded."""
    figures = series.cover_letter
    assert figures is not None and figures.jobs == (1, 2, 4, 8, 16, 32)
    assert [w.name for w in figures.workloads] == ["ssf", "fpj"]
    assert series.report_inputs() == {letter_figures.RECORD_KEY: figures.to_dict()}
    assert letter_figures.recorded(series.report_inputs()) == figures
    assert load_series(REPO / "patches/fuse-parallel-dio-6.12").report_inputs() == {}
    text = (series.folder / letter_figures.FIGURES_FILE).read_text()
    for broken, message in [
        (text.replace("ours = [\"fpj\"]", "ours = [\"ssf\"]"), "compared with two"),
        (text.replace("patched_mib = [3193, 9084, ", "patched_mib = ["), "must be 6 numbers"),
        (text + "\nfigure = 1\n", "unknown key"),
        (text.replace('setup = "', 'setup = "" #'), "`setup` must be a non-empty string"),
    ]:
        (tmp_path / letter_figures.FIGURES_FILE).write_text(broken)
        with pytest.raises(ConfigError, match=message):
            letter_figures.load(tmp_path)
