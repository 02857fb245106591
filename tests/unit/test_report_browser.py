"""report.html in a real browser: headless Chromium (Debian's `chromium`) loads the
page written from a real run's results; every image decodes and renders, the
console stays silent, and a screenshot of the first screen is kept in
tests/output/ (ignored by git) for a person to look at."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.report.write import write_report
from lab.results import CheckResult, KernelEvidence, RunResults

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
OUTPUT = REPO / "tests" / "output"
CHROMIUM = shutil.which("chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`make setup` installs Debian's chromium)"
)

# Appended to a copy of the page only: the report itself carries no script.
PROBE = """<script>
window.addEventListener("load", () => {
  const seen = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                               width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "lab-image-probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def realistic_results() -> RunResults:
    """A real `lab bench` run (tests/data/runs/run-a.json) with suite checks added:
    passes, a contradicted claim, and a kernel panic whose console is a captured log."""
    run = RunResults.load(DATA / "runs" / "run-a.json")
    panic = "\n".join((DATA / "console" / "sysrq-panic.log").read_text().splitlines()[220:])
    checks = [
        CheckResult(name, variant, True, "ok", "as claimed", duration_s=2.0, number=i)
        for i, name in enumerate(("parallel-nonextending", "flag-off", "extending"), 1)
        for variant in ("baseline", "patched")
    ]
    checks.append(CheckResult("eof-exact", "baseline", False, "1 in flight",
                              "8 of 8 WRITEs in flight", duration_s=3.0, number=5))
    checks.append(CheckResult(
        "truncate-race", "patched", False, "the kernel neither crashes nor hangs",
        "kernel panic: Kernel panic - not syncing: sysrq triggered crash",
        duration_s=4.0, console_excerpt=panic, number=7,
        kernel=KernelEvidence("panic", "Kernel panic - not syncing: sysrq triggered crash",
                              evidence=panic)))
    return dataclasses.replace(run, checks=tuple(checks))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_renders_in_chromium(tmp_path):
    paths = write_report(realistic_results(), tmp_path / "report")
    page = paths["html"].read_text()
    pngs = sorted(p.stem for p in paths["plots"].glob("*.png"))
    assert "gain-latency" in pngs and "latency-ssf-presized" in pngs

    # Every image is an inline PNG that decodes; one per plot, nothing fetched.
    sources = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', page)
    assert sorted(alt for _, alt in sources) == pngs
    for src, alt in sources:
        assert src.startswith("data:image/png;base64,"), alt
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC), alt
    assert "<script" not in page and 'src="http' not in page and "<link" not in page

    # The first screen, as a reader sees it.
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "report-first-screen.png"
    shot.unlink(missing_ok=True)
    run = chromium(f"--screenshot={shot}", "--window-size=1280,2000",
                   paths["html"].as_uri(), profile=tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_MAGIC)
    assert console_messages(run.stderr) == []
    print(f"screenshot: {shot}")

    # Every image loaded and has the size matplotlib drew.
    probe = paths["html"].with_name("probe.html")
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    run = chromium("--dump-dom", "--virtual-time-budget=5000", probe.as_uri(),
                   profile=tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_messages(run.stderr) == []
    found = re.search(r'<pre id="lab-image-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, run.stdout[-2000:]
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert sorted(i["alt"] for i in images) == pngs
    for image in images:
        assert image["complete"] and image["width"] >= 600 and image["height"] >= 380, image

    # The verdict comes first and names the failures.
    dom = run.stdout
    assert dom.index("Verdict") < dom.index("Mode: latency") < dom.index("Inputs")
    assert "baseline: claims contradicted" in dom and "eof-exact" in dom
    assert "patched: claims contradicted, 1 kernel failure" in dom
    assert "kernel panic in truncate-race: Kernel panic - not syncing" in dom
    assert "Headline gain:" in dom
    assert "<details><summary>Raw records" in dom
