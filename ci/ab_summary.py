#!/usr/bin/env python3
"""An A/B's verdict as Markdown for a CI job summary (GitHub's $GITHUB_STEP_SUMMARY).

First what decided: one line with the outcome and the lab's exit status, then
the report's own verdict and checks sections (report.md, so the summary says
what the report says), then each failed check with its evidence (expected,
observed, the end of the kernel's console when it has one). Standard library
only: it runs before and without the lab's virtual environment if need be.

Exit status: 0 whatever the results (the job fails on the lab's own status).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUTCOME = {0: "passed", 1: "a check failed", 2: "bad input (nothing was judged)",
           3: "the lab or the host broke (nothing was judged)"}
EVIDENCE_LINES = 25


def sections(report: str, titles: tuple[str, ...] = ("Verdict", "Checks")) -> str:
    """The report's `## TITLE` sections, in its order, headings one level down."""
    out, keep = [], False
    for line in report.splitlines():
        if line.startswith("## "):
            keep = line[3:].strip() in titles
        if keep:
            out.append("#" + line if line.startswith("#") else line)
    return "\n".join(out).strip()


def failures(results: dict) -> list[str]:
    out = []
    for c in results.get("checks", []):
        if c.get("passed"):
            continue
        lines = [f"#### FAIL {c['name']} on {c['variant']}", "",
                 f"- expected: {c.get('expected', '')}", f"- observed: {c.get('observed', '')}"]
        excerpt = (c.get("console_excerpt") or "").rstrip().splitlines()[-EVIDENCE_LINES:]
        if excerpt:
            lines += ["", "<details><summary>kernel console</summary>", "", "```",
                      *excerpt, "```", "", "</details>"]
        out.append("\n".join(lines))
    return out


def summary(folder: Path, status: int) -> str:
    head = f"## kernel-lab A/B: {OUTCOME.get(status, f'exit {status}')} (exit {status})"
    parts = [head]
    report = folder / "report.md"
    if report.is_file():
        parts.append(sections(report.read_text()))
    data = folder / "results.json"
    if data.is_file():
        failed = failures(json.loads(data.read_text()))
        if failed:
            parts += ["### Failed checks", *failed]
    if len(parts) == 1:
        parts.append(f"No report in {folder}: see the job's log.")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", type=int, required=True, help="the lab's exit status")
    parser.add_argument("results", type=Path, help="the run's results folder")
    args = parser.parse_args(argv)
    sys.stdout.write(summary(args.results, args.status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
