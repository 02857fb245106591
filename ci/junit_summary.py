#!/usr/bin/env python3
"""JUnit results as a GitHub job summary and one annotation per failing check.

Both are plain workflow output, so this needs no `checks: write` permission
(which pull requests from forks never get) and no third-party action:
annotations are `::error` workflow commands on stdout, the summary is
Markdown appended to the file named by --summary ($GITHUB_STEP_SUMMARY).
Standard library only: the report job has no kernel toolchain.

Exit status: 0 whatever the results (the merge step already failed the job).
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _escape(text: str) -> str:
    # Workflow command data: %, CR and LF must be escaped.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def cases(path: Path) -> list[tuple[str, str, str]]:
    """(suite/case name, outcome, message) for every test case in one file."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = node.get("message") or (node.text or "").strip()
                break
        out.append((name, outcome, message))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, help="Markdown summary file to append to")
    parser.add_argument("junit", nargs="*", type=Path)
    args = parser.parse_args(argv)
    lines = ["## kernel-lab", "", "| results | passed | failed | skipped |",
             "| --- | --- | --- | --- |"]
    failing: list[str] = []
    for path in args.junit:
        if not path.is_file():
            print(f"::warning::{_escape(f'{path}: no JUnit file (its merge failed?)')}")
            continue
        found = cases(path)
        counts = {k: sum(1 for _, o, _ in found if o == k) for k in ("passed", "skipped")}
        failed = [(n, m) for n, o, m in found if o in ("failed", "error")]
        lines.append(f"| {path.parent.name} | {counts['passed']} | {len(failed)} "
                     f"| {counts['skipped']} |")
        for name, message in failed:
            print(f"::error title={_escape(f'{path.parent.name}: {name}')}::"
                  f"{_escape(message[:2000] or 'failed')}")
            first = message.splitlines()[0][:200] if message else "failed"
            failing.append(f"- `{path.parent.name}` {name}: {first}")
    if failing:
        lines += ["", "### Failing checks", "", *failing]
    text = "\n".join(lines) + "\n"
    if args.summary:
        with args.summary.open("a") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
