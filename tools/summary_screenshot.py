#!/usr/bin/env python3
"""A picture of an A/B's job summary as a reviewer sees it on a pull request.

Reads the Markdown that ci/ab_summary.py writes for a real run, renders it the
way GitHub renders a job summary (CommonMark with tables, light theme) and has
headless Chromium take a screenshot: the figure in ci/README.md.

    python3 ci/ab_summary.py --status 1 RESULTS > summary.md
    .venv/bin/python tools/summary_screenshot.py summary.md ci/summary.png
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from markdown_it import MarkdownIt  # markdown-it-py: installed with rich, a lab dependency

# Close to GitHub's summary pane: system font, bordered tables, grey code blocks.
STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; padding: 16px 24px; max-width: 860px; }
.pane { border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px 24px 16px; }
.title { font-size: 12px; color: #59636e; margin: 8px 0 0; }
h2 { font-size: 1.5em; border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h3 { font-size: 1.25em; } h4 { font-size: 1em; }
table { border-collapse: collapse; } th, td { border: 1px solid #d1d9e0; padding: 6px 13px; }
th { background: #f6f8fa; }
code, pre { font: 12px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f6f8fa; border-radius: 6px; padding: 16px; overflow: auto; }
"""


def page(markdown: str, job: str) -> str:
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f"<!doctype html><meta charset=utf-8><style>{STYLE}</style>"
            f"<div class=pane><p class=title>{html.escape(job)} summary</p>{body}</div>")


def screenshot(html_path: Path, png: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        sys.exit("chromium is not installed (`make setup` installs Debian's chromium)")
    with tempfile.TemporaryDirectory(prefix="lab-shot-") as profile:
        run = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-background-networking", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
             html_path.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if run.returncode != 0 or not png.is_file():
        sys.exit(f"chromium failed ({run.returncode}): {run.stderr[-1000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", type=Path, help="the Markdown ci/ab_summary.py wrote")
    ap.add_argument("png", type=Path, help="where the screenshot goes")
    ap.add_argument("--job", default="kernel-lab", help="the job's name above the summary")
    ap.add_argument("--size", default="900x1000", help="the window, WIDTHxHEIGHT")
    args = ap.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="lab-summary-") as tmp:
        html_path = Path(tmp) / "summary.html"
        html_path.write_text(page(args.summary.read_text(), args.job))
        screenshot(html_path, args.png, width, height)
    print(f"{args.png}: {args.png.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
