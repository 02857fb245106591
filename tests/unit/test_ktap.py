"""The KTAP/TAP parser on the shapes its producers print (lab/ktap.py)."""

from __future__ import annotations

import textwrap

import pytest

from lab.results import SubResult
from lab.suite import ktap


def parse(text: str) -> ktap.Report:
    return ktap.parse(textwrap.dedent(text))


def test_flat_ktap_with_skip_and_failure():
    r = parse("""\
        KTAP version 1
        1..3
        # writing 4 blocks
        ok 1 write
        not ok 2 verify # data differs at 4096
        ok 3 fallocate # SKIP not supported by the server
        """)
    assert r.parsed and r.format == "KTAP 1" and r.plan == 3 and not r.problems
    assert [t.name for t in r.tests] == ["write", "verify", "fallocate"]
    assert r.tests[0].diagnostics == ("writing 4 blocks",)
    assert r.tests[1].failed and r.tests[1].reason == "data differs at 4096"
    assert r.tests[2].directive == "SKIP" and r.tests[2].reason == "not supported by the server"
    assert r.failures() == ["verify"] and not r.ok
    assert r.subtests() == (SubResult("write", True), SubResult("verify", False),
                            SubResult("fallocate", True, "SKIP"))
    assert r.summary() == "KTAP 1: 1 ok, 1 skipped, 1 not ok (verify)"


def test_nested_ktap_subtests_are_closed_by_the_parent_line():
    r = parse("""\
        KTAP version 1
        1..2
            KTAP version 1
            # Subtest: fuse
            1..2
            ok 1 parallel
            not ok 2 append
        # fuse: pass:1 fail:1
        not ok 1 fuse
            KTAP version 1
            # Subtest: ext4
            1..1
            ok 1 write
        ok 2 ext4
        """)
    assert r.parsed and not r.problems
    assert [(t.name, len(t.subtests)) for t in r.tests] == [("fuse", 2), ("ext4", 1)]
    assert [s.name for s in r.subtests()] == [
        "fuse", "fuse/parallel", "fuse/append", "ext4", "ext4/write"]
    assert r.failures() == ["fuse", "fuse/append"]
    assert r.summary() == "KTAP 1: 2 ok, 1 not ok (fuse/append)"


def test_tap14_subtest_header_before_the_indented_block():
    r = parse("""\
        TAP version 14
        1..1
        # Subtest: io
            1..2
            ok 1 - read
            ok 2 - write
        ok 1 - io
        """)
    assert r.format == "TAP 14" and r.ok
    assert [s.name for s in r.subtests()] == ["io", "io/read", "io/write"]


def test_tap13_yaml_blocks_are_skipped():
    r = parse("""\
        TAP version 13
        1..2
        not ok 1 - fsync
          ---
          message: fsync returned EIO
          errno: 5
          ...
        ok 2 - close
        """)
    assert r.parsed and not r.problems
    assert [(t.name, t.ok, t.subtests) for t in r.tests] == [("fsync", False, ()),
                                                             ("close", True, ())]


def test_tap12_without_version_needs_a_plan():
    assert ktap.parse("1..2\nok 1 - a\nok 2 - b\n").format == "TAP"
    assert ktap.parse("1..2\nok 1 - a\nok 2 - b\n").ok
    plain = ktap.parse("copying...\nok\ndone\n")
    assert not plain.parsed and "version line or plan" in plain.note
    assert "not parsed" in plain.summary()


@pytest.mark.parametrize("text", ["", "hello\nworld\n", "Segmentation fault\n"])
def test_plain_output_is_not_parsed(text):
    r = ktap.parse(text)
    assert not r.parsed and r.note and r.subtests() == () and not r.ok


def test_a_short_run_is_a_problem_not_a_pass():
    r = parse("""\
        KTAP version 1
        1..4
        ok 1 a
        ok 2 b
        """)
    assert r.parsed and not r.failures()
    assert r.problems == ("planned 4 tests, ran 2",) and not r.ok
    assert "planned 4 tests, ran 2" in r.summary()


def test_numbers_out_of_order_and_bail_out():
    r = parse("""\
        TAP version 13
        1..3
        ok 1 a
        ok 3 c
        Bail out! the disk went away
        ok 4 never read
        """)
    assert "test c: number 3, expected 2" in r.problems
    assert "Bail out! the disk went away" in r.problems
    assert [t.name for t in r.tests] == ["a", "c"] and not r.ok


def test_a_producer_killed_inside_a_subtest_keeps_what_it_said():
    r = parse("""\
        KTAP version 1
        1..1
            KTAP version 1
            # Subtest: soak
            1..3
            ok 1 round-1
        """)
    assert r.parsed and not r.ok
    assert r.tests[0].name == "soak" and not r.tests[0].ok
    assert [s.name for s in r.subtests()] == ["soak", "soak/round-1"]
    assert any("no result line" in p for p in r.problems)


@pytest.mark.parametrize("line, ok, directive, failed", [
    ("ok 1 a # TODO later", True, "TODO", False),
    ("not ok 1 a # TODO not yet", False, "TODO", False),
    ("not ok 1 a # XFAIL known bug", False, "XFAIL", False),
    ("not ok 1 a # TIMEOUT 30s", False, "TIMEOUT", True),
    ("not ok 1 a # ERROR no such device", False, "ERROR", True),
    ("ok 1 a # skipped: no io_uring", True, "SKIP", False),
    ("ok 1 a #SKIP", True, "SKIP", False),
    ("ok 1 a # errors: 0", True, "", False),  # not a directive, only a comment
    ("skip 1 a", True, "SKIP", False),  # KTAP 2's result word
])
def test_directives(line, ok, directive, failed):
    t = ktap.parse(f"KTAP version 1\n1..1\n{line}\n").tests[0]
    assert (t.name, t.ok, t.directive, t.failed) == ("a", ok, directive, failed)


def test_descriptions_dashes_escapes_and_missing_names():
    r = ktap.parse("TAP version 13\n1..3\nok 1 - with dash\nok 2 issue \\#12 fixed\nok 3\n")
    assert [t.name for t in r.tests] == ["with dash", "issue #12 fixed", "test 3"]


def test_noise_before_the_version_line_and_a_skipped_plan():
    r = ktap.parse("+ set -x\nstarting\nKTAP version 1\n1..0 # SKIP no FUSE here\n")
    assert r.parsed and r.plan == 0 and r.tests == () and r.ok


def test_the_example_script_as_captured_from_a_patched_guest(data_dir):
    r = ktap.parse((data_dir / "ktap" / "fuse-ktap.patched.out").read_text())
    assert r.ok and r.format == "KTAP 1" and r.plan == 5
    assert r.tests[0].diagnostics[0].startswith("variant patched (6.1.192-lab-")
    assert [t.name for t in r.tests] == ["write-direct", "read-back",
                                         "parallel-disjoint-writes", "backing-store",
                                         "fallocate"]
