"""The verdict cache's key: everything that can change what a case concludes
is in it (the kernel, what the variant claims, the cases, the repeat count),
and an entry reads back as the same results, marked with the run they came from."""
from types import SimpleNamespace

from lab import config, suite, verdicts
from lab.results import CheckResult


def prepared(build_key="k1", features=("parallel-direct-writes",)):
    build = SimpleNamespace(key=build_key, features=features)
    return SimpleNamespace(builds={"patched": build}, image=SimpleNamespace(key="img"),
                           accel=SimpleNamespace(name="tcg"))


def key(p=None, cases=None, repeat=1):
    return verdicts.key(config.LabConfig(), p or prepared(),
                        "patched", cases or suite.CASES[:3], repeat)


def test_the_same_inputs_give_the_same_key():
    assert key() == key()


def test_each_input_of_a_verdict_changes_the_key():
    base = key()
    assert key(prepared(build_key="k2")) != base
    # Same kernel, other claims: another expectation, so another verdict
    # (a 6.12 version judged with or without the baseline's I/O modes).
    assert key(prepared(features=("parallel-direct-writes", "iomode-exclusive-cached"))) != base
    assert key(cases=suite.CASES[:2]) != base
    assert key(repeat=3) != base


def test_an_entry_reads_back_marked_with_its_run(tmp_path):
    results = [CheckResult("flag-off", "patched", True, "1 in flight", "1 of 8", {"n": 1})]
    verdicts.save(tmp_path, key(), "run-42", results)
    (got,) = verdicts.load(tmp_path, key())
    assert (got.name, got.passed, got.observed) == ("flag-off", True, "1 of 8")
    assert got.details == {"n": 1, "cached_from": "run-42"}
    assert verdicts.load(tmp_path, key(repeat=2)) is None


def test_an_unreadable_entry_is_a_miss(tmp_path):
    verdicts.save(tmp_path, key(), "run-1", [])
    path = next((tmp_path / "verdicts").iterdir())
    path.write_text("{not json")
    assert verdicts.load(tmp_path, key()) is None
