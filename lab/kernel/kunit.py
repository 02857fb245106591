"""KUnit suites from the tree under test (`lab test --kunit GLOB`).

KUnit suites built into a kernel run as it boots and print KTAP on the
console (lab.suite.kunit reads it). What a glob needs from the kernel is
found in the source, the way a developer would: the files that define a
suite whose name matches, then the Makefile lines that build them, up to the
options that switch them on (`obj-$(CONFIG_LIST_KUNIT_TEST) += list-test.o`;
a test linked into a module, `ext4-inode-test-objs += inode-test.o`, needs the
module's option too), and what those plainly depend on in Kconfig
(lab.kernel.kconfig). Those options, `=y` (the guest boots without modules),
plus CONFIG_KUNIT, are one more config fragment, verified like the lab's
own. `--kunitconfig FILE` gives the options instead, like kunit.py's
`.kunitconfig`. On the command line, `kunit.filter_glob` runs only the
matching suites.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from pathlib import Path

from lab.errors import ConfigError
from lab.kernel import kconfig
from lab.kernel.build import parse_config, store_fragment
from lab.kernel.tree_files import TreeFiles

_DEFINES = r"kunit_test_(init_section_)?suites?\("
_SUITE_NAME = re.compile(r"struct\s+kunit_suite\s+\w+\s*=\s*\{[^;]*?\.name\s*=\s*\"([^\"]+)\"",
                         re.S)
_ASSIGN = re.compile(r"^([A-Za-z0-9_.-]+)-(\$\(CONFIG_([A-Za-z0-9_]+)\)|y|objs)\s*[:+]?=(.*)$")
MAX_HOPS = 8


def suites(tree: TreeFiles) -> dict[str, str]:
    """Every KUnit suite the source defines: name -> the file (relative path)."""
    found: dict[str, str] = {}
    for rel, _ in tree.grep(_DEFINES, "*.c", files_only=True):
        for name in _SUITE_NAME.findall(tree.read(rel) or ""):
            found.setdefault(name, rel)
    return found


def matching(tree: TreeFiles, glob: str) -> dict[str, str]:
    """The suites whose name matches the glob's suite part (`suite.test`)."""
    suite_glob = glob.split(".", 1)[0]
    every = suites(tree)
    chosen = {n: f for n, f in every.items() if fnmatch.fnmatchcase(n, suite_glob)}
    if not chosen:
        near = sorted(every)[:20]
        raise ConfigError(f"--kunit {glob}: no KUnit suite in the source matches "
                          f"{suite_glob!r} ({len(every)} suites, e.g. {', '.join(near)})")
    return chosen


def _makefile_lines(tree: TreeFiles, folder: str) -> list[str]:
    """The folder's Makefile/Kbuild, continuation lines joined."""
    lines: list[str] = []
    for name in ("Kbuild", "Makefile"):
        text = tree.read(f"{folder}/{name}" if folder else name)
        if text is not None:
            text = text.replace("\\\n", " ")
            lines += [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return lines


def _includer(tree: TreeFiles, rel: str) -> str | None:
    """The .c file of the same folder that #includes `rel` (tests compiled as
    part of the code they test, e.g. lib/kunit/executor_test.c)."""
    folder, name = posixpath.split(rel)
    include = f'#include "{name}"'
    for other in sorted(tree.names(folder)):
        path = posixpath.join(folder, other)
        if other.endswith(".c") and path != rel and include in (tree.read(path) or ""):
            return path
    return None


def options_building(tree: TreeFiles, rel: str) -> list[str]:
    """The config options that must be on for `rel` (a .c file) to be built in."""
    options = _options_of_object(tree, rel)
    if not options and (host := _includer(tree, rel)):
        options = _options_of_object(tree, host)
    if not options:
        raise ConfigError(f"--kunit: cannot tell which config option builds {rel} from its "
                          "Makefile; give the options with --kunitconfig FILE")
    return options


def _options_of_object(tree: TreeFiles, rel: str) -> list[str]:
    folder, name = posixpath.split(rel)
    wanted = posixpath.splitext(name)[0] + ".o"
    options: list[str] = []
    for _ in range(MAX_HOPS):
        hit = None
        for line in _makefile_lines(tree, folder):
            m = _ASSIGN.match(line)
            if m and wanted in m.group(4).split():
                hit = m
                break
        if hit is None:
            break
        lhs, option = hit.group(1), hit.group(3)
        if option:
            options.append(option)
        if lhs != "obj":
            wanted = f"{lhs}.o"  # a part of a composite object: find what builds it
            continue
        if not folder:
            break
        # Built whenever its folder is: what builds the folder?
        wanted, folder = f"{posixpath.basename(folder)}/", posixpath.dirname(folder)
    return list(dict.fromkeys(reversed(options)))


def fragment(tree: TreeFiles, glob: str | None, kunitconfig: Path | None,
             cache_root: Path) -> Path:
    """The config fragment that builds the glob's suites in (or the user's
    --kunitconfig), with KUnit itself on; content-addressed in the cache."""
    wanted = {"CONFIG_KUNIT": "y"}
    if kunitconfig is not None:
        wanted.update(parse_config(kunitconfig.read_text()))
    else:
        for rel in dict.fromkeys(matching(tree, glob or "*").values()):
            for option in options_building(tree, rel):
                wanted.update({f"CONFIG_{o}": "y"
                               for o in (option, *kconfig.needs(tree, option))})
    return store_fragment(wanted, cache_root, "kunit")


def cmdline(glob: str | None) -> tuple[str, ...]:
    return (f"kunit.filter_glob={glob}",) if glob else ()


def check_glob(glob: str) -> str:
    if not glob or any(c.isspace() for c in glob) or "\"" in glob:
        raise ConfigError(f"--kunit {glob!r}: a suite glob, e.g. 'list*' or 'ext4_inode_test'")
    return glob
