"""What a kernel source implies regardless of the patch, read from what it
defines (never a version): on a throwaway git tree shaped like 6.1 and 6.12."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.kernel import gittree, implied
from lab.kernel.features import (
    DIRECT_IO_ALLOW_MMAP,
    IOMODE_EXCLUSIVE_CACHED,
    PARALLEL_DIRECT_WRITES,
)
from lab.kernel.series import Series
from lab.kernel.sources import KernelSource, SourceSpec
from lab.kernel.variants import _check_baseline_features

REPO = Path(__file__).resolve().parents[2]
FILES_6_1 = {"fs/fuse/file.c": "if (ff->open_flags & FOPEN_PARALLEL_DIRECT_WRITES)\n",
             "fs/fuse/inode.c": "/* no ALLOW_MMAP here */\n"}
FILES_6_12 = {**FILES_6_1,
              "fs/fuse/iomode.c": "set_bit(FUSE_I_CACHE_IO_MODE, &fi->state);\n",
              "fs/fuse/inode.c": "if (flags & FUSE_DIRECT_IO_ALLOW_MMAP)\n"}


def _source(tmp: Path, files: dict[str, str]) -> KernelSource:
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    gittree.git(tmp, "init", "-q")
    gittree.commit_all(tmp, "tree")
    return KernelSource("k", tmp, "a test tree", commit=gittree.head(tmp))


def test_6_1_implies_nothing_and_defines_the_flag(tmp_path):
    src = _source(tmp_path, FILES_6_1)
    assert implied.regardless(src) == ()
    assert set(implied.detect(src)) == {PARALLEL_DIRECT_WRITES}


def test_6_12_implies_io_modes_and_allow_mmap_with_where(tmp_path):
    src = _source(tmp_path, FILES_6_12)
    assert implied.regardless(src) == (IOMODE_EXCLUSIVE_CACHED, DIRECT_IO_ALLOW_MMAP)
    ev = implied.detect(src)[IOMODE_EXCLUSIVE_CACHED]
    assert ev.path == "fs/fuse/iomode.c"
    assert implied.detect_in_folder(tmp_path) == implied.detect(src)


def test_a_series_declaring_other_baseline_features_is_refused_naming_both(tmp_path):
    src = _source(tmp_path, FILES_6_12)
    series = Series("s", tmp_path, "", None, (), "v1", SourceSpec("debian", "x", ""),
                    baseline_features=(IOMODE_EXCLUSIVE_CACHED,))
    with pytest.raises(ConfigError, match="declares iomode-exclusive-cached, but a test tree "
                       "implies direct-io-allow-mmap, iomode-exclusive-cached"):
        _check_baseline_features(series, src)
    ok = Series("s", tmp_path, "", None, (), "v1", SourceSpec("debian", "x", ""),
                baseline_features=(DIRECT_IO_ALLOW_MMAP, IOMODE_EXCLUSIVE_CACHED))
    _check_baseline_features(ok, src)


def test_lab_features_names_what_a_tree_implies_and_where(tmp_path):
    for rel, text in FILES_6_12.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "Makefile").write_text("VERSION = 6\n")
    (tmp_path / "Kconfig").write_text("mainmenu \"Linux\"\n")
    out = subprocess.run([sys.executable, "-m", "lab.cli", "features"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "iomode-exclusive-cached  [implied by" in out.stdout
    assert "fs/fuse/iomode.c" in out.stdout
    assert "claims iomode-exclusive-cached, direct-io-allow-mmap by itself" in out.stdout
