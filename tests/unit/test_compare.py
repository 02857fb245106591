"""`lab compare`: two real `lab bench` runs (tests/data/runs/run-a.json and run-b.json,
the same settings measured twice on this 2-core TCG host), and the refusals."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.report.compare import bench_differences, combine, pairs, write_comparison
from lab.results import BenchSample, RunResults

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "data" / "runs"


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def runs(tmp_path: Path) -> tuple[Path, Path]:
    """The two captured runs, each in its own run folder as `lab bench` leaves it."""
    out = []
    for name in ("run-a", "run-b"):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_bytes((RESULTS / f"{name}.json").read_bytes())
        out.append(d)
    return out[0], out[1]


def said(out: subprocess.CompletedProcess) -> str:
    """stderr as one line: the terminal UI wraps long messages."""
    return " ".join(out.stderr.split())


def edited(src: Path, dest: Path, **bench_changes) -> Path:
    doc = json.loads((src / "results.json").read_text())
    doc["inputs"]["bench"].update(bench_changes)
    dest.mkdir()
    (dest / "results.json").write_text(json.dumps(doc))
    return dest


def test_two_real_runs_compare_variant_by_variant(tmp_path):
    a, b = runs(tmp_path)
    out = lab("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stdout + out.stderr
    md = (tmp_path / "cmp" / "compare.md").read_text()
    # matched by name: baseline against baseline, patched against patched
    assert "## run-b:baseline against run-a:baseline" in md
    assert "## run-b:patched against run-a:patched" in md
    assert "| run-a:patched MiB/s (±ci95, n) | run-b:patched MiB/s (±ci95, n) |" in md
    assert "at least 5%" in md  # the same rule, quoted from lab.stats
    assert "cover letter" not in md.lower()
    for pair in ("baseline-vs-baseline", "patched-vs-patched"):
        for plot in ("latency-ssf-presized.png", "gain-latency.png"):
            assert (tmp_path / "cmp" / "plots" / pair / plot).is_file()
            assert f"](plots/{pair}/{plot})" in md
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * 4  # 3 workloads + the gain, per pair
    assert "run-b:patched against run-a:patched" in out.stdout  # the terminal summary


def test_chosen_variants_and_the_default_folder(tmp_path):
    a, b = runs(tmp_path)
    out = lab("compare", str(a), str(b / "results.json"), "--variant-a", "baseline",
              "--variant-b", "patched")
    assert out.returncode == 0, out.stdout + out.stderr
    folder = tmp_path / "compare-run-a-vs-run-b"
    md = (folder / "compare.md").read_text()
    assert "## run-b:patched against run-a:baseline" in md
    assert "against run-a:patched" not in md
    assert (folder / "plots" / "latency-fpj.png").is_file()  # one pair: no sub-folder


def test_differing_settings_are_refused_unless_forced(tmp_path):
    a, b = runs(tmp_path)
    c = edited(b, tmp_path / "run-c", jobs=[1, 2, 8], write_delay_us=5000)
    out = lab("compare", str(a), str(c), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 2
    assert "benchmark settings differ in jobs, write_delay_us" in said(out)
    assert "--force" in said(out)
    assert not (tmp_path / "cmp").exists()  # refused before writing anything
    forced = lab("compare", str(a), str(c), "--out", str(tmp_path / "cmp"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "FORCED: benchmark setting jobs differs" in (tmp_path / "cmp" / "compare.md").read_text()


def test_repeats_may_differ(tmp_path):
    a, b = runs(tmp_path)
    c = edited(b, tmp_path / "run-c", repeat=5)
    out = lab("compare", str(a), str(c), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr
    assert "repeats differ (2 vs 5)" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize("args, message", [
    (("--variant-a", "v9"), "--variant-a v9: RUN_A measured baseline, patched"),
    ((), "no results.json"),
])
def test_bad_input_is_exit_2(tmp_path, args, message):
    a, b = runs(tmp_path)
    target = b if args else tmp_path / "missing"
    out = lab("compare", str(a), str(target), "--out", str(tmp_path / "cmp"), *args)
    assert out.returncode == 2
    assert message in said(out)


# Pure logic, on synthetic RunResults.


def sample(variant: str, numjobs: int, repeat: int, mib: float) -> BenchSample:
    return BenchSample(variant, "ssf-presized", "latency", numjobs, repeat, mib * 2**20, mib, 1,
                       0, 20000)


def run(run_id: str, variants: dict[str, float], bench: dict | None = None) -> RunResults:
    return RunResults(
        run_id=run_id, created="2026-01-01T00:00:00+00:00",
        inputs={"bench": bench if bench is not None else {"jobs": [1, 2], "repeat": 3}},
        variants={v: {"features": []} for v in variants},
        samples=tuple(sample(v, n, r, mib * n * (1 + 0.01 * r))
                      for v, mib in variants.items() for n in (1, 2) for r in range(3)))


def test_pairs_and_labels():
    a = run("x", {"baseline": 10, "v4": 20})
    b = run("y", {"baseline": 10, "v5": 40})
    assert pairs(a, b) == [("baseline", "baseline")]
    assert pairs(a, b, "v4", "v5") == [("v4", "v5")]
    assert pairs(a, b, "baseline") == [("baseline", "baseline")]  # one name for both
    with pytest.raises(ConfigError, match="--variant-b v4: RUN_B measured baseline, v5"):
        pairs(a, b, "v4")
    with pytest.raises(ConfigError, match="no variant measured in both runs"):
        pairs(run("x", {"v4": 1}), run("y", {"v5": 1}))
    pair = combine(a, b, "v4", "v5")
    assert (pair.base, pair.new) == ("x:v4", "y:v5")
    assert {s.variant for s in pair.results.samples} == {"x:v4", "y:v5"}
    same = combine(a, dataclasses.replace(a), "v4", "v4")
    assert (same.base, same.new) == ("A:v4", "B:v4")  # same run id: still two sides


def test_bench_differences():
    a = run("x", {"v": 1}, {"jobs": [1, 2], "repeat": 3, "size_mib": 64})
    b = run("y", {"v": 1}, {"jobs": [1, 2], "repeat": 5, "size_mib": 32, "job_file": ""})
    assert bench_differences(a, b) == ["job_file", "size_mib"]
    with pytest.raises(ConfigError, match="RUN_B y: no benchmark settings"):
        bench_differences(a, dataclasses.replace(b, inputs={}))


def test_write_comparison_of_a_real_gain(tmp_path):
    a = run("x", {"v4": 10.0})
    b = run("y", {"v5": 20.0})
    for r in (a, b):
        (tmp_path / r.run_id).mkdir()
        r.save(tmp_path / r.run_id / "results.json")
    paths, text = write_comparison(tmp_path / "x", tmp_path / "y", tmp_path / "out",
                                   variant_a="v4", variant_b="v5")
    md = paths["markdown"].read_text()
    assert "### Headline gain: +100.0%" in md
    assert "| ssf-presized | 2 |" in md and "yes (better)" in md
    assert "Headline gain: +100.0%" in text
