"""Which cases `-k` picks: an exact name or number is that case only, anything
else matches names by substring (several parts separated by commas)."""
import pytest

from lab.errors import ConfigError
from lab.suite import catalog


def names(expr):
    return [c.name for c in catalog.select(expr)]


def test_no_expression_is_the_whole_suite():
    assert names(None) == [c.name for c in catalog.CASES]


def test_an_exact_name_is_that_case_only():
    # Both also occur inside other names (shared-short-write, shared-server-errors...).
    assert names("short-write") == ["short-write"]
    assert names("server-errors,flag-off") == ["flag-off", "server-errors"]


def test_a_number_is_that_case():
    assert names("2") == [catalog.CASES[1].name]


def test_a_part_of_a_name_matches_every_case_containing_it():
    assert names("server") == [c.name for c in catalog.CASES if "server" in c.name]
    assert len(names("server")) >= 4


def test_an_expression_that_matches_nothing_is_bad_input():
    with pytest.raises(ConfigError, match="no case matches"):
        catalog.select("no-such-case")


def test_bisect_takes_one_case_and_refuses_an_ambiguous_part():
    from lab.bisect.job import _one_case

    assert _one_case("server-errors").name == "server-errors"  # exact, though others contain it
    with pytest.raises(ConfigError, match="matches several cases"):
        _one_case("server")
