"""The tree's own tests: kselftest targets and KUnit suites, from the source
to the config they need, and KUnit's KTAP from a boot console (pure parts)."""

import subprocess

import pytest

from lab.errors import ConfigError
from lab.kernel import kselftest, kunit
from lab.kernel.tree_files import TreeFiles
from lab.suite import kunit as kunit_check

CONSOLE = """\
[    0.000000] Linux version 6.1.0-lab
[    0.512000] KTAP version 1
[    0.512100] 1..2
[    0.512200]     KTAP version 1
[    0.512300]     # Subtest: list-kunit-test
[    0.512400]     1..2
[    0.512500] random: crng init done
[    0.512600]     ok 1 list_test_list_init
[    0.512700]     not ok 2 list_test_list_add
[    0.512800] # list-kunit-test: pass:1 fail:1 skip:0 total:2
[    0.512900] not ok 1 list-kunit-test
[    0.513000]     KTAP version 1
[    0.513100]     # Subtest: hlist
[    0.513200]     1..1
[    0.513300]     ok 1 hlist_test_init # SKIP no reason
[    0.513400] ok 2 hlist
[    1.200000] Run /sbin/lab-init as init process
KERNEL-LAB-READY
[    9.000000] ok 3 printed-after-ready
"""


def test_kunit_ktap_is_read_from_the_boot_console_up_to_ready():
    text = kunit_check.ktap_of_boot(CONSOLE)
    assert text.startswith("KTAP version 1\n1..2\n    KTAP version 1")
    assert "printed-after-ready" not in text
    obs = kunit_check.judge("list*", text)
    assert not obs.passed
    assert "list-kunit-test/list_test_list_add" in obs.observed
    names = {s.name: s for s in obs.subtests}
    assert names["hlist/hlist_test_init"].skipped


def test_kunit_passes_only_when_every_test_passed():
    fixed = CONSOLE.replace("not ok 2 list_test_list_add", "ok 2 list_test_list_add").replace(
        "not ok 1 list-kunit-test", "ok 1 list-kunit-test")
    assert kunit_check.judge("list*", kunit_check.ktap_of_boot(fixed)).passed


def test_kunit_that_ran_nothing_fails():
    assert not kunit_check.judge("x", kunit_check.ktap_of_boot("[ 0.1] hello\nKERNEL-LAB-READY"
                                                                )).passed
    empty = kunit_check.ktap_of_boot("[    0.5] KTAP version 1\n[    0.5] 1..0\nKERNEL-LAB-READY")
    obs = kunit_check.judge("x", empty)
    assert not obs.passed and "ran no test" in obs.observed


def _tree(tmp_path):
    """A toy kernel tree: a plain test, one linked into a module, one #included."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/Makefile").write_text(
        "obj-y += helpers.o\nobj-$(CONFIG_LIST_KUNIT_TEST) += list-test.o \\\n   other.o\n")
    (tmp_path / "lib/list-test.c").write_text(
        'static struct kunit_suite list_suite = {\n\t.name = "list-kunit-test",\n};\n'
        "kunit_test_suites(&list_suite);\n")
    (tmp_path / "fs/ext4").mkdir(parents=True)
    (tmp_path / "fs/Makefile").write_text("obj-$(CONFIG_EXT4_FS) += ext4/\n")
    (tmp_path / "fs/ext4/Makefile").write_text(
        "ext4-y := inode.o\next4-$(CONFIG_EXT4_KUNIT_TESTS) += inode-test.o\n"
        "obj-y += ext4.o\n")
    (tmp_path / "fs/ext4/inode-test.c").write_text(
        'static struct kunit_suite ext4_inode_test_suite = {\n .name = "ext4_inode_test",'
        "\n .test_cases = cases,\n};\nkunit_test_suite(ext4_inode_test_suite);\n")
    (tmp_path / "lib/exec.c").write_text('#include "exec_test.c"\n')
    (tmp_path / "lib/Makefile").write_text(
        (tmp_path / "lib/Makefile").read_text() + "obj-$(CONFIG_KUNIT) += exec.o\n")
    (tmp_path / "lib/exec_test.c").write_text(
        'static struct kunit_suite s = { .name = "executor_test" };\nkunit_test_suite(s);\n')
    return _committed(tmp_path)


def _committed(folder):
    """The folder as one commit, read the way the lab reads a variant's source."""
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "t"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    return TreeFiles(folder, head)


def test_kunit_options_come_from_the_makefiles(tmp_path):
    tree = _tree(tmp_path)
    assert kunit.suites(tree) == {"list-kunit-test": "lib/list-test.c",
                                  "ext4_inode_test": "fs/ext4/inode-test.c",
                                  "executor_test": "lib/exec_test.c"}
    assert kunit.options_building(tree, "lib/list-test.c") == ["LIST_KUNIT_TEST"]
    # Linked into ext4.o, built when fs/ext4/ is: the module's option and the test's.
    assert kunit.options_building(tree, "fs/ext4/inode-test.c") == ["EXT4_FS",
                                                                     "EXT4_KUNIT_TESTS"]
    assert kunit.options_building(tree, "lib/exec_test.c") == ["KUNIT"]
    frag = kunit.fragment(tree, "ext4*", None, tmp_path / "cache")
    assert frag.read_text() == ("CONFIG_EXT4_FS=y\nCONFIG_EXT4_KUNIT_TESTS=y\n"
                                "CONFIG_KUNIT=y\n")
    with pytest.raises(ConfigError, match="no KUnit suite in the source matches 'nosuch\\*'"):
        kunit.fragment(tree, "nosuch*", None, tmp_path / "cache")


def test_kunitconfig_gives_the_options_instead(tmp_path):
    tree = _tree(tmp_path)
    own = tmp_path / ".kunitconfig"
    own.write_text("CONFIG_KUNIT=y\nCONFIG_FOO_TEST=m\n")
    frag = kunit.fragment(tree, "whatever", own, tmp_path / "cache")
    assert frag.read_text() == "CONFIG_FOO_TEST=y\nCONFIG_KUNIT=y\n"
    assert kunit.cmdline("list*") == ("kunit.filter_glob=list*",) and kunit.cmdline("") == ()
    with pytest.raises(ConfigError):
        kunit.check_glob("a b")


def test_kselftest_targets_are_checked_against_the_source(tmp_path):
    assert kselftest.split_targets(["memfd,net/forwarding", "memfd"], "--kselftest") == (
        "memfd", "net/forwarding")
    for bad in ("../etc", "a b", "x;rm"):
        with pytest.raises(ConfigError, match="not a kselftest target"):
            kselftest.split_targets([bad], "--kselftest")
    root = tmp_path / kselftest.SELFTESTS
    (root / "memfd").mkdir(parents=True)
    (root / "memfd/Makefile").write_text("all:\n")
    (root / "memfd/config").write_text("CONFIG_FUSE_FS=m\nCONFIG_MEMFD_X=y\n")
    tree = _committed(tmp_path)
    kselftest.check_targets(tree, ["memfd"], "--kselftest")
    with pytest.raises(ConfigError, match="no kselftest target 'memfdd'.*did you mean memfd"):
        kselftest.check_targets(tree, ["memfdd"], "--kselftest")


def test_a_targets_config_adds_only_what_the_lab_does_not_set(tmp_path):
    root = tmp_path / kselftest.SELFTESTS
    (root / "memfd").mkdir(parents=True)
    (root / "memfd/config").write_text("CONFIG_FUSE_FS=m\n")
    lab_frag = tmp_path / "guest.config"
    lab_frag.write_text("CONFIG_FUSE_FS=y\n")
    # `=m` is `=y` in a guest without modules, which the lab's config has already:
    # the kernel's key (and its cached build) stays.
    tree = _committed(tmp_path)
    assert kselftest.fragment(tree, ["memfd"], [lab_frag], tmp_path / "c") is None
    (root / "memfd/config").write_text("CONFIG_FUSE_FS=m\nCONFIG_TMPFS=y\n")
    # Read from the commit, not the disk: the new config counts once committed.
    assert kselftest.fragment(tree, ["memfd"], [lab_frag], tmp_path / "c") is None
    tree = _committed(tmp_path)
    frag = kselftest.fragment(tree, ["memfd"], [lab_frag], tmp_path / "c")
    assert frag is not None and frag.read_text() == "CONFIG_TMPFS=y\n"
