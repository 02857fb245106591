"""The verdict cache's key: everything that can change what a case concludes
is in it (the kernel, what the variant claims, the cases, the repeat count,
every file of the lab's package), and an entry reads back as the same results,
marked with the run they came from."""
import shutil
from pathlib import Path
from types import SimpleNamespace

import lab
from lab import config
from lab.results import CheckResult
from lab.suite import catalog, verdict_cache


def built(build_key="k1", features=("parallel-direct-writes",)):
    return SimpleNamespace(key=build_key, features=features)


def key(build=None, cases=None, repeat=1):
    return verdict_cache.key(config.LabConfig(), build or built(), "img", "tcg",
                             cases or catalog.CASES[:3], repeat)


def test_the_same_inputs_give_the_same_key():
    assert key() == key()


def test_each_input_of_a_verdict_changes_the_key():
    base = key()
    assert key(built(build_key="k2")) != base
    # Same kernel, other claims: another expectation, so another verdict
    # (a 6.12 version judged with or without the baseline's I/O modes).
    assert key(built(features=("parallel-direct-writes", "iomode-exclusive-cached"))) != base
    assert key(cases=catalog.CASES[:2]) != base
    assert key(repeat=3) != base


def test_an_entry_reads_back_marked_with_its_run(tmp_path):
    results = [CheckResult("flag-off", "patched", True, "1 in flight", "1 of 8", {"n": 1})]
    verdict_cache.save(tmp_path, key(), "run-42", results)
    (got,) = verdict_cache.load(tmp_path, key())
    assert (got.name, got.passed, got.observed) == ("flag-off", True, "1 of 8")
    assert got.details == {"n": 1} and got.cached_from == "run-42"
    assert verdict_cache.load(tmp_path, key(repeat=2)) is None


def test_an_unreadable_entry_is_a_miss(tmp_path):
    verdict_cache.save(tmp_path, key(), "run-1", [])
    path = next((tmp_path / "verdicts").iterdir())
    path.write_text("{not json")
    assert verdict_cache.load(tmp_path, key()) is None


def test_one_byte_changed_in_any_file_of_the_package_changes_the_code_digest(tmp_path):
    """Found by walking the package, not by a list: every module, the flake
    policy and the guest programs' sources take part."""
    copy = tmp_path / "lab"
    shutil.copytree(Path(lab.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    base = verdict_cache.code_digest(copy)
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    assert any(p.name == "verdict.py" for p in files)
    assert any(p.name == "labfs.c" for p in files)
    for path in files:
        data = path.read_bytes()
        path.write_bytes(data + b" ")
        verdict_cache.code_digest.cache_clear()
        assert verdict_cache.code_digest(copy) != base, path.relative_to(copy)
        path.write_bytes(data)
    verdict_cache.code_digest.cache_clear()
    assert verdict_cache.code_digest(copy) == base
