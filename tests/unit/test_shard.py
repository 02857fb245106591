"""`--shard K/N`: N shards cover every item exactly once, whatever the input order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lab.config import BenchConfig
from lab.errors import ConfigError
from lab.jobs.runs import bench_points
from lab.shard import Shard, parse_shard, select

LENGTHS = (0, 1, 2, 3, 5, 6, 7, 10, 13, 50)


def _items(n: int) -> list[str]:
    # Keys that sort differently as strings and as numbers, to catch any
    # accidental reliance on input position.
    return [f"case-{i}" for i in range(n)]


@pytest.mark.parametrize("count", range(1, 8))
@pytest.mark.parametrize("length", LENGTHS)
def test_shards_cover_every_item_exactly_once(count: int, length: int):
    items = _items(length)
    parts = [select(items, Shard(k, count), key=str) for k in range(1, count + 1)]
    seen = Counter(item for part in parts for item in part)
    assert set(seen) == set(items)
    assert all(n == 1 for n in seen.values())
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("count", range(1, 8))
def test_split_does_not_depend_on_input_order(count: int):
    items = _items(23)
    shuffled = list(items)
    random.Random(7).shuffle(shuffled)
    for k in range(1, count + 1):
        shard = Shard(k, count)
        assert set(select(items, shard, key=str)) == set(select(shuffled, shard, key=str))


def test_selected_items_keep_the_callers_order():
    items = _items(20)
    random.Random(3).shuffle(items)
    for k in (1, 2, 3):
        part = select(items, Shard(k, 3), key=str)
        assert part == [it for it in items if it in part]


def test_key_decides_not_the_item():
    # Tuples like the suite's (variant, case) are sharded by the key alone.
    items = [("patched", 1), ("baseline", 2), ("patched", 2), ("baseline", 1)]
    parts = [select(items, Shard(k, 2), key=lambda it: f"{it[0]}/{it[1]}") for k in (1, 2)]
    # Ranks by key: baseline/1, baseline/2, patched/1, patched/2; each part in input order.
    assert parts == [[("patched", 1), ("baseline", 1)], [("baseline", 2), ("patched", 2)]]


def test_no_shard_keeps_everything_in_input_order():
    items = ["b", "c", "a"]
    assert select(items, None, key=str) == ["b", "c", "a"]


def test_fewer_items_than_shards():
    parts = [select(["x", "y"], Shard(k, 5), key=str) for k in range(1, 6)]
    assert parts == [["x"], ["y"], [], [], []]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/1", Shard(1, 1)), ("1/2", Shard(1, 2)), ("2/2", Shard(2, 2)), (" 3 / 7 ", Shard(3, 7))],
)
def test_parse_accepts_k_of_n(text: str, expected: Shard):
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/2", "K must be between 1 and N"),
        ("3/2", "K must be between 1 and N"),
        ("1/0", "N must be at least 1"),
        ("a/b", "expected K/N"),
        ("2", "expected K/N"),
        ("", "expected K/N"),
        ("-1/2", "expected K/N"),
        ("1/2/3", "expected K/N"),
    ],
)
def test_parse_rejects_with_a_clear_message(text: str, message: str):
    with pytest.raises(ConfigError, match=message) as info:
        parse_shard(text)
    assert info.value.exit_code == 2


def test_shard_built_in_code_is_checked_too():
    with pytest.raises(ConfigError):
        Shard(0, 2)
    with pytest.raises(ConfigError):
        Shard(1, 0)


def test_str():
    assert str(Shard(1, 4)) == "1/4"


def test_a_benchmark_point_never_spans_two_runners():
    """Every repeat of a point and both variants' runs of it land on one shard,
    so a merged report's mean and interval never mix machines (issue 23)."""
    cfg = BenchConfig()
    every = bench_points(cfg, ["baseline", "patched"], None)
    for count in (2, 3, 5):
        owner: dict[tuple, int] = {}
        seen = []
        for k in range(1, count + 1):
            for pt in bench_points(cfg, ["baseline", "patched"], Shard(k, count)):
                where = (pt.mode, pt.workload, pt.numjobs)
                assert owner.setdefault(where, k) == k, (where, count)
                seen.append(pt.key)
        assert sorted(seen) == sorted(pt.key for pt in every)  # each run exactly once
