"""Split a job's work items across N CI machines: `--shard K/N`.

Every shard process computes the same full item list, so the split must be a
pure function of the items' keys: then N processes that never talk to each
other still cover every item exactly once, and `lab report --merge` can put
the pieces back together.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lab.errors import ConfigError

T = TypeVar("T")

_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based, as CI systems number parallel jobs) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        # Checked here too, so a Shard built in code is as safe as a parsed one.
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(
                f"shard {self.index}/{self.count}: need 1 <= K <= N and N >= 1"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """"K/N" -> Shard(K, N); anything else is a usage error (exit code 2)."""
    m = _SHARD_RE.fullmatch(text)
    if not m:
        raise ConfigError(
            f"--shard {text!r}: expected K/N with whole numbers, e.g. 1/2 (shard 1 of 2)"
        )
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ConfigError(f"--shard {text!r}: N must be at least 1")
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text!r}: K must be between 1 and N ({count})")
    return Shard(index, count)


def select(items: Sequence[T], shard: Shard | None, key: Callable[[T], str],
           together: Callable[[T], str] | None = None) -> list[T]:
    """The items shard `shard` runs, in the caller's order.

    Items are ranked by `key` (stable sort), and shard K takes ranks K-1,
    K-1+N, K-1+2N, ...: the N shards partition the items and their sizes
    differ by at most one. Ranking by key rather than by position means the
    split does not depend on the order the caller happened to build its list
    in; keys should be unique for that to hold fully (items with equal keys
    are ranked in input order). The chosen items come back in the caller's
    order because that order is the execution order (e.g. variants
    interleaved so host drift hits both sides alike). None: every item.

    `together`: items with the same value of it always land in one shard (the
    repeats of a benchmark point and both variants' runs of it: a point's mean
    and interval must never mix machines); the groups are dealt as above.
    """
    if shard is None:
        return list(items)
    if together is not None:
        groups = sorted({together(item) for item in items})
        mine = set(groups[shard.index - 1 :: shard.count])
        return [item for item in items if together(item) in mine]
    ranked = sorted(range(len(items)), key=lambda i: key(items[i]))
    chosen = set(ranked[shard.index - 1 :: shard.count])
    return [item for i, item in enumerate(items) if i in chosen]
