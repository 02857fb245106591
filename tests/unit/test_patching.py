"""Hostile patches, fuzz and mboxes against a toy lab-owned git tree.

Each hostile patch of issue 12 is refused or applied and taken out again;
either way nothing outside the tree is touched and the tree is provably
clean afterwards (`git status` shows nothing, ignored files included).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lab.errors import ConfigError, PatchError
from lab.kernel import build, gittree, patching

DEMO = "".join(f"int line{i};\n" for i in range(1, 21))


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """A tree, and an outside folder with a file a hostile patch would like to hit."""
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "fs").mkdir(parents=True)
    outside.mkdir()
    (tree / "fs/demo.c").write_text(DEMO)
    (tree / "fs/tool.sh").write_text("#!/bin/sh\n")
    (tree / "fs/tool.sh").chmod(0o644)
    (outside / "x").write_text(DEMO)
    build.make_source_tree(tree)
    return tree, outside


def _state(root: Path) -> dict[str, tuple[str, int, bool]]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "", p.lstat().st_mode,
                                       p.is_symlink())
            for p in sorted(root.rglob("*")) if ".git" not in p.relative_to(root).parts}


def _apply(tree: Path, tmp_path: Path, text: str, name: str = "p.patch", **kw):
    patch = tmp_path / name
    patch.write_text(text)
    return build.apply_patches(tree, [patch], tmp_path / "log", **kw)


def _assert_untouched(tree: Path, outside: Path, tree_before: dict, outside_before: dict) -> None:
    assert gittree.dirty(tree) == []
    assert _state(tree) == tree_before
    assert _state(outside) == outside_before


def test_absolute_target_path_is_refused(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    hostile = (f"--- a/fs/demo.c\n+++ b/{outside}/x\n@@ -1,3 +1,3 @@\n"
               " int line1;\n-int line2;\n+int pwned;\n int line3;\n")
    with pytest.raises(PatchError) as info:
        _apply(tree, tmp_path, hostile)
    assert "invalid path" in info.value.excerpt
    _assert_untouched(tree, outside, before, out_before)


def test_dotdot_path_is_refused(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    hostile = ("--- a/../outside/x\n+++ b/../outside/x\n@@ -1,3 +1,3 @@\n"
               " int line1;\n-int line2;\n+int pwned;\n int line3;\n")
    with pytest.raises(PatchError, match="does not apply"):
        _apply(tree, tmp_path, hostile)
    _assert_untouched(tree, outside, before, out_before)


def test_type_change_to_symlink_then_write_through_it_is_refused(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    retype = ("diff --git a/fs/demo.c b/fs/demo.c\ndeleted file mode 100644\n"
              "--- a/fs/demo.c\n+++ /dev/null\n@@ -1,20 +0,0 @@\n"
              + "".join(f"-{ln}\n" for ln in DEMO.splitlines())
              + f"diff --git a/fs/demo.c b/fs/demo.c\nnew file mode 120000\n--- /dev/null\n"
              f"+++ b/fs/demo.c\n@@ -0,0 +1 @@\n+{outside}\n\\ No newline at end of file\n")
    through = ("diff --git a/fs/demo.c/x b/fs/demo.c/x\nnew file mode 100644\n--- /dev/null\n"
               "+++ b/fs/demo.c/x\n@@ -0,0 +1 @@\n+pwned\n")
    # In one patch: git refuses to write beyond the link.
    with pytest.raises(PatchError) as info:
        _apply(tree, tmp_path, retype + through)
    assert "beyond a symbolic link" in info.value.excerpt
    _assert_untouched(tree, outside, before, out_before)
    # As two patches: the link itself points out of the tree and is refused.
    (tmp_path / "1.patch").write_text(retype)
    (tmp_path / "2.patch").write_text(through)
    with pytest.raises(PatchError, match="symlink that points outside the tree"):
        build.apply_patches(tree, [tmp_path / "1.patch", tmp_path / "2.patch"], tmp_path / "log")
    _assert_untouched(tree, outside, before, out_before)


def test_symlink_inside_the_tree_then_write_through_it_is_refused(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    link = ("diff --git a/fs/sub b/fs/sub\nnew file mode 120000\n--- /dev/null\n+++ b/fs/sub\n"
            "@@ -0,0 +1 @@\n+.\n\\ No newline at end of file\n")
    through = ("diff --git a/fs/sub/demo.c b/fs/sub/demo.c\n--- a/fs/sub/demo.c\n"
               "+++ b/fs/sub/demo.c\n@@ -1,3 +1,3 @@\n int line1;\n-int line2;\n+int x;\n"
               " int line3;\n")
    (tmp_path / "1.patch").write_text(link)
    (tmp_path / "2.patch").write_text(through)
    with pytest.raises(PatchError) as info:
        build.apply_patches(tree, [tmp_path / "1.patch", tmp_path / "2.patch"], tmp_path / "log")
    assert "beyond a symbolic link" in info.value.excerpt
    _assert_untouched(tree, outside, before, out_before)


def test_pure_rename_is_applied_and_restored(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    result = _apply(tree, tmp_path, "diff --git a/fs/demo.c b/fs/moved.c\nsimilarity index 100%\n"
                    "rename from fs/demo.c\nrename to fs/moved.c\n")
    assert set(result.touched) == {"fs/demo.c", "fs/moved.c"}
    assert (tree / "fs/moved.c").read_text() == DEMO and not (tree / "fs/demo.c").exists()
    build.restore_tree(tree)
    _assert_untouched(tree, outside, before, out_before)


def test_mode_change_is_applied_and_restored(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    _apply(tree, tmp_path,
           "diff --git a/fs/tool.sh b/fs/tool.sh\nold mode 100644\nnew mode 100755\n")
    assert (tree / "fs/tool.sh").stat().st_mode & 0o111
    build.restore_tree(tree)
    _assert_untouched(tree, outside, before, out_before)


def test_binary_patch_without_data_is_refused(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    with pytest.raises(PatchError) as info:
        _apply(tree, tmp_path, "diff --git a/fs/blob.bin b/fs/blob.bin\nnew file mode 100644\n"
               "index 0000000..1111111\nBinary files /dev/null and b/fs/blob.bin differ\n")
    assert "binary" in info.value.excerpt.lower()
    _assert_untouched(tree, outside, before, out_before)


def test_a_stray_file_and_an_edit_are_cleaned_before_the_next_apply(world, tmp_path):
    """What a killed build leaves (an edited file, an ignored object file) goes."""
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    (tree / ".gitignore").write_text("*.o\n")
    (tree / "fs/x.o").write_text("object")
    (tree / "fs/demo.c").write_text("edited\n")
    assert set(gittree.dirty(tree)) == {".gitignore", "fs/x.o", "fs/demo.c"}
    build.restore_tree(tree)
    _assert_untouched(tree, outside, before, out_before)


# --- fuzz ------------------------------------------------------------------------

FUZZY = ("--- a/fs/demo.c\n+++ b/fs/demo.c\n@@ -8,7 +8,7 @@\n int line8;\n int line9;\n"
         " int line10;\n-int line11;\n+int eleven;\n int line12;\n int line13;\n"
         " int NOT_line14;\n")  # the last context line does not match


def test_fuzz_is_applied_and_recorded(world, tmp_path):
    tree, _ = world
    result = _apply(tree, tmp_path, FUZZY)
    assert [a.fuzz for a in result.applied] == [1]
    assert "int eleven;" in (tree / "fs/demo.c").read_text()
    assert patching.fuzz_summary(result.applied)[0].endswith("applied with fuzz 1 (git apply -C2)")


def test_strict_refuses_fuzz_and_says_so(world, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    with pytest.raises(PatchError) as info:
        _apply(tree, tmp_path, FUZZY, strict=True)
    assert "--strict refuses fuzz" in str(info.value)
    assert "fs/demo.c: hunk #1 (@@ -8,7 +8,7 @@) does not apply" in info.value.excerpt
    _assert_untouched(tree, outside, before, out_before)


def test_an_offset_is_no_fuzz_but_is_noted(world, tmp_path):
    tree, _ = world
    moved = ("--- a/fs/demo.c\n+++ b/fs/demo.c\n@@ -3,3 +3,3 @@\n int line5;\n-int line6;\n"
             "+int six;\n int line7;\n")
    result = _apply(tree, tmp_path, moved, strict=True)
    assert result.applied[0].fuzz == 0
    assert any("offset" in n for n in result.applied[0].notes)


# --- mboxes ----------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev", "-c",
                           "user.email=dev@example.invalid", *args], check=True, text=True,
                          capture_output=True).stdout


@pytest.fixture
def mbox(world, tmp_path) -> Path:
    """`git format-patch --cover-letter --stdout` of three commits made on a copy."""
    tree, _ = world
    work = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(tree), str(work)], check=True)
    for i, (old, new) in enumerate([("line2", "two"), ("line9", "nine"), ("line17", "x")], 1):
        demo = work / "fs/demo.c"
        demo.write_text(demo.read_text().replace(f"int {old};", f"int {new};"))
        _git(work, "commit", "-qam", f"fs: change number {i}\n\nFrom the body: why {i}.")
    out = tmp_path / "series.mbox"
    out.write_text(_git(work, "format-patch", "--cover-letter", "--stdout", "-3", "HEAD"))
    return out


def test_an_mbox_is_applied_mail_by_mail_with_its_cover_letter(world, mbox, tmp_path):
    tree, _ = world
    pieces, covers = patching.read_pieces(mbox)
    assert [p.subject for p in pieces] == [f"[PATCH {i}/3] fs: change number {i}"
                                           for i in (1, 2, 3)]
    assert len(covers) == 1 and covers[0].subject.startswith("[PATCH 0/3]")
    result = build.apply_patches(tree, [mbox], tmp_path / "log")
    assert [a.index for a in result.applied] == [2, 3, 4]  # mail 1 is the cover letter
    assert result.cover_letters == tuple(covers)
    text = (tree / "fs/demo.c").read_text()
    assert "int two;" in text and "int nine;" in text and "int x;" in text
    build.restore_tree(tree)
    assert gittree.dirty(tree) == []


def test_a_failing_mail_is_named_by_subject_and_hunk(world, mbox, tmp_path):
    tree, outside = world
    before, out_before = _state(tree), _state(outside)
    demo = tree / "fs/demo.c"
    # Make the second mail's context disappear from the tree: commit a new pristine state.
    demo.write_text(DEMO.replace("int line8;\nint line9;\nint line10;\n", "int other;\n"))
    gittree.git(tree, "commit", "-qam", "moved on")
    build.make_source_tree(tree)
    with pytest.raises(PatchError) as info:
        build.apply_patches(tree, [mbox], tmp_path / "log")
    assert '[3/4] "[PATCH 2/3] fs: change number 2" does not apply' in str(info.value)
    assert "fs/demo.c: hunk #1 (@@ -6,7 +6,7 @@" in info.value.excerpt
    assert gittree.dirty(tree) == []
    assert _state(outside) == out_before
    assert before  # the fixture's tree was real


def test_a_mail_without_a_patch_in_the_middle_is_an_error(tmp_path):
    box = tmp_path / "bad.mbox"
    mail = ("From 1234 Mon Sep 17 00:00:00 2001\nFrom: a <a@b>\nSubject: [PATCH {n}/2] {s}\n\n"
            "{body}\n")
    diff = "---\n a | 1 +\n\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n"
    box.write_text(mail.format(n=1, s="one", body=diff) + mail.format(n=2, s="two", body="hi"))
    with pytest.raises(ConfigError, match=r'\[2/2\] "\[PATCH 2/2\] two": the mail holds no patch'):
        patching.read_pieces(box)


def test_a_plain_diff_is_one_piece_without_subject(tmp_path):
    plain = tmp_path / "plain.patch"
    plain.write_text("--- linux.orig/fs/a.c\t2024-01-01\n+++ linux/fs/a.c\t2024-01-02\n"
                     "@@ -1 +1 @@\n-x\n+y\n")
    pieces, covers = patching.read_pieces(plain)
    assert len(pieces) == 1 and pieces[0].subject == "" and covers == []


def _mails(text: str) -> list[str]:
    """An mbox's mails, each starting at its 'From ' line."""
    starts = [m.start() for m in re.finditer(r"^From [0-9a-f]{40} ", text, re.M)]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def test_a_thread_mbox_takes_the_patches_in_order_and_skips_the_replies(world, mbox, tmp_path):
    """What `b4 am` or a list archive gives: mails out of order, review replies
    (one quoting a diff), an encoded subject, mboxrd quoting."""
    tree, _ = world
    cover, p1, p2, p3 = _mails(mbox.read_text())
    reply = ("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
             "From: Reviewer <r@x>\nSubject: Re: [PATCH 1/3] fs: change number 1\n\n"
             "> -int line2;\n> +int two;\nLooks good.\n")
    review_diff = ("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
                   "From: Reviewer <r@x>\nSubject: =?UTF-8?q?Re=3A_=5BPATCH_2/3=5D_fs=3A_change?=\n"
                   "\nHow about this instead?\n\n--- a/fs/demo.c\n+++ b/fs/demo.c\n"
                   "@@ -9 +9 @@\n-int line9;\n+int other;\n")
    p1 = p1.replace("From the body: why 1.", ">From the body: why 1.")  # mboxrd quoting
    thread = tmp_path / "thread.mbox"
    thread.write_text(cover + p2 + reply + p1 + review_diff + p3)
    contents = patching.read_mbox(thread)
    assert [p.subject for p in contents.pieces] == [f"[PATCH {i}/3] fs: change number {i}"
                                                    for i in (1, 2, 3)]
    assert len(contents.covers) == 1
    assert [s.split("] ", 1)[1] for s in contents.skipped] == [
        "Re: [PATCH 1/3] fs: change number 1 (a reply)", "Re: [PATCH 2/3] fs: change (a reply)"]
    result = build.apply_patches(tree, [thread], tmp_path / "log")
    assert [a.subject for a in result.applied][0] == "[PATCH 1/3] fs: change number 1"
    assert "int x;" in (tree / "fs/demo.c").read_text()
    build.restore_tree(tree)


def test_a_series_missing_one_of_its_patches_is_refused(mbox, tmp_path):
    cover, p1, _p2, p3 = _mails(mbox.read_text())
    box = tmp_path / "holey.mbox"
    box.write_text(cover + p1 + p3)
    with pytest.raises(ConfigError, match="patch 2 of 3 is not in the mbox"):
        patching.read_mbox(box)
