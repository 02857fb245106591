"""Mutant generation on kernel-style C written for the test (pure, no builds), and the
variant's files worked out on a toy tree through the builds' patching path, and the kill
matrix rendered by lab/report."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from lab.errors import ConfigError, PatchError
from lab.kernel import build, gittree, patching
from lab.kernel.build import KernelSource, Variant, apply_patches
from lab.mutate import job, mutants

BEFORE = """\
/* a comment with inode_lock(x) and a > b in it */
static bool write_extends(struct kiocb *iocb, size_t count)
{
	return iocb->ki_pos + count > i_size_read(iocb->inode);
}

static ssize_t direct_write(struct kiocb *iocb, struct iov_iter *from)
{
	struct inode *inode = file_inode(iocb->ki_filp);
	ssize_t res;

	inode_lock(inode);
	res = generic_write_checks(iocb, from);
	inode_unlock(inode);
	return res;
}

static int untouched(int a)
{
	return a < 3 && a > 0;
}
"""

AFTER = BEFORE.replace("""\
	inode_lock(inode);
	res = generic_write_checks(iocb, from);
	inode_unlock(inode);
""", """\
	bool excl = !(ff->open_flags & FOPEN_PARALLEL_DIRECT_WRITES) ||
		iocb->ki_flags & IOCB_APPEND ||
		write_extends(iocb, iov_iter_count(from));

	if (excl)
		inode_lock(inode);
	else
		inode_lock_shared(inode);
	res = generic_write_checks(iocb, from);
	if (excl)
		inode_unlock(inode);
	else
		inode_unlock_shared(inode);
""")


def test_functions_are_found_kernel_style():
    names = [f.name for f in mutants.functions(AFTER)]
    assert names == ["write_extends", "direct_write", "untouched"]
    assert [f.returns for f in mutants.functions(AFTER)] == ["bool", "ssize_t", "int"]


def test_only_the_changed_functions_are_targets():
    changed = mutants.changed_functions(BEFORE, AFTER)
    assert [f.name for f in changed] == ["direct_write"]
    # a new function counts as changed
    assert [f.name for f in mutants.changed_functions("", BEFORE)] == [
        "write_extends", "direct_write", "untouched"]


def _mutants(text=AFTER, before=BEFORE):
    return mutants.mutants(text, mutants.changed_functions(before, text))


def test_each_operator_makes_the_expected_edits():
    ms = _mutants()
    by_op = Counter(m.operator for m in ms)
    # three operands of the || chain: each dropped and each negated
    assert by_op["cond-drop"] == 3 and by_op["cond-negate"] == 3
    # two locks and two unlocks, each swapped to the other kind and dropped
    assert by_op["lock-swap"] == 4
    assert by_op["flag-bit"] == 2  # FOPEN_PARALLEL_DIRECT_WRITES, IOCB_APPEND
    summaries = {m.summary.split(" ", 1)[1] for m in ms}
    assert "lock-swap: inode_lock -> inode_lock_shared" in summaries
    assert "flag-bit: IOCB_APPEND -> IOCB_DIRECT" in summaries
    assert "cond-drop: iocb->ki_flags & IOCB_APPEND || -> (removed)" in summaries
    # declarations and the non-void return are never dropped (only build failures)
    dropped = [m.original.strip() for m in ms if m.operator == "drop-statement"]
    assert "inode_lock(inode);" in dropped and "inode_unlock_shared(inode);" in dropped
    assert not any(d.startswith(("struct inode", "ssize_t", "bool", "return")) for d in dropped)


def test_mutants_apply_cleanly_and_change_only_their_spot():
    for m in _mutants():
        mutated = m.apply(AFTER)
        assert mutated != AFTER
        diff = mutants.unified_diff("fs/fuse/file.c", AFTER, mutated)
        assert diff.startswith("--- a/fs/fuse/file.c\n+++ b/fs/fuse/file.c\n")
        # nothing outside the mutated function moves
        assert mutated.endswith(AFTER[AFTER.index("static int untouched"):])


def test_comments_and_unchanged_functions_are_never_mutated():
    for m in _mutants():
        assert m.function == "direct_write"
        assert "comment" not in m.original


def test_bool_return_and_relational_in_a_changed_bool_function():
    before = BEFORE.replace("> i_size_read", ">= i_size_read")
    ms = _mutants(BEFORE, before)
    ops = {m.operator: m for m in ms}
    assert ops["relational"].replacement == ">="
    assert ops["bool-return"].replacement.startswith("!(iocb->ki_pos")


def test_keys_are_stable_and_unique():
    first = [m.key for m in _mutants()]
    assert first == [m.key for m in _mutants()]
    assert len(set(first)) == len(first)
    # a change elsewhere in the file does not change the keys
    shifted = "/* one more line */\n" + AFTER
    assert [m.key for m in _mutants(shifted, "/* one more line */\n" + BEFORE)] == first


def test_choose_is_deterministic_and_refuses_nonsense():
    ms = _mutants()
    assert mutants.choose(ms, 3, None) == ms[:3]
    assert mutants.choose(ms, 5, 7) == mutants.choose(ms, 5, 7)
    assert mutants.choose(ms, 5, 7) != ms[:5]
    with pytest.raises(ConfigError):
        mutants.choose(ms, 0, None)


def test_the_operators_for_the_shapes_of_a_write():
    """A sum's operand dropped, the kiocb's flag read from the file, a narrower
    length helper, a caller's flag added to a condition (issue 21's shapes)."""
    every = mutants.mutants(AFTER, mutants.functions(AFTER))  # write_extends too
    ms = _mutants()
    summaries = {m.summary.split(" ", 1)[1] for m in every}
    assert "arith-drop: iocb->ki_pos + count -> iocb->ki_pos" in summaries
    assert "arith-drop: iocb->ki_pos + count -> count" in summaries
    assert ("flag-source: iocb->ki_flags & IOCB_APPEND -> iocb->ki_filp->f_flags & O_APPEND"
            in summaries)
    assert "narrow-length: iov_iter_count -> iov_iter_single_seg_count" in summaries
    conj = [m for m in ms if m.operator == "add-conjunct"]
    assert {m.replacement for m in conj} >= {"(excl) && !(iocb->ki_flags & IOCB_DIRECT)"}
    for m in conj + [m for m in every if m.operator in ("arith-drop", "flag-source")]:
        assert m.apply(AFTER) != AFTER


# --- the variant's files, patched the way a build patches them -----------------------

MAIL = ("From {sha} Mon Sep 17 00:00:00 2001\nFrom: Dev <dev@example.invalid>\n"
        "Subject: [PATCH {n}/1] {subject}\n\n{body}\n")


def _toy_variant(tmp_path: Path, *, strict: bool = False):
    """A lab-owned tree, a baseline that also edits a non-C file, and the
    variant's own change as an mbox (cover letter + one mail) whose context
    matches the tree only with fuzz: what a build applies, a bare `git apply`
    refuses."""
    tree = tmp_path / "tree"
    (tree / "fs/fuse").mkdir(parents=True)
    (tree / "Documentation").mkdir()
    (tree / "fs/fuse/file.c").write_text(BEFORE)
    (tree / "Documentation/fuse.rst").write_text("FUSE\n====\n")
    build.make_source_tree(tree)
    based, patched = (t.replace("a comment with", "a baseline comment with")
                      for t in (BEFORE, AFTER))
    base = tmp_path / "baseline.patch"
    base.write_text(mutants.unified_diff("fs/fuse/file.c", BEFORE, based)
                    + mutants.unified_diff("Documentation/fuse.rst", "FUSE\n====\n",
                                           "FUSE\n====\nNo parallel writes.\n"))
    # The author's tree had this line otherwise: three lines above the change.
    line = "\tstruct inode *inode = file_inode(iocb->ki_filp);"
    drift = "\tstruct inode *inode = iocb->ki_filp->f_inode;"
    diff = mutants.unified_diff("fs/fuse/file.c", based.replace(line, drift),
                                patched.replace(line, drift))
    own = tmp_path / "own.mbox"
    own.write_text(MAIL.format(sha="0" * 40, n=0, subject="the cover letter", body="Why.")
                   + MAIL.format(sha="1" * 40, n=1, subject="fuse: parallel writes",
                                 body="The change.\n---\n" + diff))
    src = KernelSource("k", tree, "a toy tree", commit=gittree.head(tree))
    return Variant("toy", src, (base, own), (), strict=strict), own, patched


def test_targets_apply_the_patches_through_the_builds_path(tmp_path, monkeypatch):
    v, own, patched = _toy_variant(tmp_path)
    calls = []

    def spy(tree, patches, log_path, **kw):
        result = apply_patches(tree, patches, log_path, **kw)
        calls.append(([p.name for p in patches], kw, [a.fuzz for a in result.applied]))
        return result

    monkeypatch.setattr(build, "apply_patches", spy)
    (target,) = job.targets(v, [own], tmp_path / "cache", tmp_path / "mutate-apply.log")
    # the baseline alone, then every patch; the mbox's one mail needed fuzz 1
    assert calls == [(["baseline.patch"], {"strict": False}, [0]),
                     (["baseline.patch", "own.mbox"], {"strict": False}, [0, 1])]
    assert target.path == "fs/fuse/file.c" and target.functions == ("direct_write",)
    assert target.text == patched and target.mutants
    assert gittree.dirty(v.source.path) == []  # the shared tree is never written


def test_targets_refuse_fuzz_when_the_variant_is_strict(tmp_path):
    v, own, _ = _toy_variant(tmp_path, strict=True)
    with pytest.raises(PatchError, match="would apply with fuzz"):
        job.targets(v, [own], tmp_path / "cache", tmp_path / "mutate-apply.log")


def test_diff_paths_name_what_a_scratch_tree_needs():
    text = ("--- a/fs/a.c\t2024-01-01\n+++ b/fs/a.c\n--- /dev/null\n+++ b/fs/new.c\n"
            "diff --git a/fs/old.c b/fs/moved.c\nrename from fs/old.c\n"
            "+++ b//etc/passwd\n--- a/../outside\n---\n")
    assert patching.diff_paths(text) == ["fs/a.c", "fs/new.c", "fs/old.c", "fs/moved.c"]


# --- the kill matrix, rendered by lab/report --------------------------------------------


def _report() -> job.MutationReport:
    o, s = job.Outcome, job.Status
    return job.MutationReport("patched", ("fs/fuse/file.c:direct_write",), 5, (
        o("aaaa00000001", "lock-swap", "direct_write", 12, "L12 lock-swap: inode_lock -> x",
          s.KILLED, "parallel-writes", "1 of 8 in flight\x1b[31m", 30.2, 12.4, "-a\n+b\n"),
        o("aaaa00000002", "cond-drop", "direct_write", 13, "L13 cond-drop: a < b || -> gone",
          s.SURVIVED, diff="--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-\tif (a < b)\x07\n+\tif (b)\n",
          build_s=31.0, test_s=100.0),
        o("aaaa00000003", "relational", "direct_write", 14, "L14 relational: > -> >=",
          s.EQUIVALENT, detail="a zero-length write only marks the attributes stale",
          diff="-a\n+b\n"),
        o("aaaa00000004", "drop-statement", "direct_write", 15, "L15 drop",
          s.BUILD_FAILED, detail="error: \x00 \x1b[1mbad\x1b[0m", build_s=3.0, diff="-c\n"),
    ))


def test_the_kill_matrix_renders_through_the_report_document():
    md = job.markdown(_report())
    assert md.startswith("# Mutation testing: patched\n")
    assert "**Score 50%** (killed / (built - equivalent))" in md
    assert "build-failed: 1 · equivalent: 1 · killed: 1 · survived: 1" in md
    assert "| lock-swap | 1 | 0 | 0 | 0 | 0 |" in md
    assert ("| `aaaa00000001` | lock-swap | direct_write:12 | killed | parallel-writes | 30 | 12 |"
            in md)
    # survivors and equivalents get their diff (and reason); the killed one does not
    assert "## survived: `aaaa00000002`" in md and "\n+\tif (b)\n```" in md
    assert "## equivalent: `aaaa00000003`" in md and "only marks the attributes stale" in md
    assert "aaaa00000001` L12" not in md
    assert "\x07" not in md and "\x00" not in md


def test_a_control_character_in_a_mutants_evidence_does_not_reach_the_junit_xml(tmp_path):
    text = job.junit(_report())
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", text)
    ET.fromstring(text.encode())  # well-formed
    path = tmp_path / "junit.xml"
    path.write_text(text)
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.name, suite.tests, suite.failures, suite.skipped) == (
        "lab mutate patched", 4, 1, 2)
    cases = {c.name.split()[0]: c for c in suite}
    assert cases["aaaa00000001"].is_passed
    assert cases["aaaa00000001"].time == pytest.approx(42.6)
    assert cases["aaaa00000001"].classname == "mutate.lock-swap"
    (failure,) = cases["aaaa00000002"].result
    assert isinstance(failure, Failure) and failure.message == "survived: no case failed"
    assert "-\tif (a < b)\ufffd\n" in failure.text
    (skipped,) = cases["aaaa00000004"].result
    assert isinstance(skipped, Skipped) and skipped.message == "build-failed: error: \ufffd bad"


def test_a_mutant_the_lab_broke_on_has_no_verdict_and_fails_the_junit():
    broke = job.Outcome("aaaa00000009", "cond-drop", "f", 3, "x", job.Status.LAB_ERROR,
                        detail="labprobe pwrite failed (exit 2)")
    killed = job.Outcome("aaaa0000000a", "cond-drop", "f", 4, "y", job.Status.KILLED,
                         killed_by="extending")
    report = job.MutationReport("patched", ("fs/fuse/file.c:f",), 2, (broke, killed))
    assert report.score == 1.0  # counted: the killed one only
    text = job.junit(report)
    assert 'message="the lab broke: labprobe pwrite failed (exit 2)"' in text
    assert "## lab-error: `aaaa00000009`" in job.markdown(report)
