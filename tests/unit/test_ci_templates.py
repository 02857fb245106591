"""The CI templates in ci/: schema-valid, and shaped the way ci/README.md says.

Validation is offline: check-jsonschema ships the GitHub workflow and GitLab CI
schemas (`--builtin-schema vendor.*`). actionlint, which would also check
expressions and action inputs, is not available offline, so it is not run.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / "ci" / "github" / "kernel-lab.yml"
GITLAB = REPO / "ci" / "gitlab" / ".gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

# The lab's subcommands. A fixed list rather than lab.cli.build_parser(): some
# subcommands are being added concurrently, and this test must not depend on that.
LAB_SUBCOMMANDS = {"build", "image", "boot", "ssh", "doctor", "bench", "run", "test",
                   "bisect", "report"}
# Keys at the top of a .gitlab-ci.yml that are not jobs.
GITLAB_RESERVED = {"stages", "variables", "default", "include", "workflow", "image", "services",
                   "cache", "before_script", "after_script", "spec"}

GH_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
LAB_CMD = re.compile(r"\.venv/bin/lab\s+([a-z][a-z-]*)")
MAKE_CMD = re.compile(r"(?:^|[;&|]\s*)make\s+([a-z][a-z-]*)", re.MULTILINE)


def _load(path: Path) -> dict[str, Any]:
    # PyYAML is not installed; ruamel.yaml comes with check-jsonschema.
    ruamel = pytest.importorskip("ruamel.yaml")
    return ruamel.YAML(typ="safe").load(path.read_text())


def _check_schema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"{CHECK_JSONSCHEMA} missing (pip install -e '.[dev]')")
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _commands(script: str | list[str]) -> Iterator[list[str]]:
    """Each `lab` command line in a script, split like a shell would.

    GitHub expressions lose their inner spaces first (`${{ matrix.shard }}`
    becomes `${{matrix.shard}}`) so that each stays one word.
    """
    lines = [script] if isinstance(script, str) else script
    for text in lines:
        for line in text.splitlines():
            if ".venv/bin/lab " in line:
                yield shlex.split(GH_EXPR.sub(r"${{\1}}", line.split("||")[0]))


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _assert_each_merged_once(shard_results: list[str], merges: list[list[str]]) -> None:
    """Every shard's --results folder is picked up by exactly one `lab report --merge`."""
    for results in shard_results:
        hits = [argv for argv in merges
                if any(fnmatch.fnmatch(results, g)
                       for g in argv[argv.index("--merge") + 1 : argv.index("--out")])]
        assert len(hits) == 1, results


# --- schemas ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", GITHUB),
        # The stricter variant: every job must set timeout-minutes.
        ("custom.github-workflows-require-timeout", GITHUB),
        ("vendor.gitlab-ci", GITLAB),
    ],
)
def test_template_matches_its_schema(schema: str, path: Path):
    result = _check_schema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("schema", "path", "old", "new"),
    [
        ("vendor.github-workflows", GITHUB, "timeout-minutes: 90", "timeout-minutes: ninety"),
        ("vendor.gitlab-ci", GITLAB, "parallel: 2", "parallel: two"),
    ],
)
def test_schema_check_rejects_a_broken_copy(schema, path, old, new, tmp_path: Path):
    # Proves the check above is not vacuous (a wrong schema name, say).
    text = path.read_text()
    assert old in text, f"update this test: {old!r} is no longer in {path.name}"
    broken = tmp_path / path.name
    broken.write_text(text.replace(old, new, 1))
    assert _check_schema(schema, broken).returncode != 0


# --- GitHub Actions --------------------------------------------------------------


@pytest.fixture(scope="module")
def github() -> dict[str, Any]:
    return _load(GITHUB)


def _gh_runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job.get("steps", []) if "run" in s]


def _gh_uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").startswith(action + "@")]


def test_github_every_job_has_a_timeout(github):
    for name, job in github["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and job["timeout-minutes"] > 0, name


def test_github_shard_matrix_covers_1_to_n(github):
    sharded = 0
    for name, job in github["jobs"].items():
        for run in _gh_runs(job):
            for argv in _commands(run):
                if "--shard" not in argv:
                    continue
                k, n = _arg(argv, "--shard").split("/")
                assert k == "${{matrix.shard}}", name
                assert job["strategy"]["matrix"]["shard"] == list(range(1, int(n) + 1)), name
                assert job["strategy"].get("fail-fast") is False, name
                sharded += 1
    assert sharded == 2  # lab test and lab run


def test_github_cache_key_names_the_lab_inputs(github):
    prepare = github["jobs"]["prepare"]
    (cache,) = _gh_uses(prepare, "actions/cache")
    key = cache["with"]["key"]
    # The key may be computed by an earlier step: follow steps.<id>.outputs.
    text = key
    for step_id in re.findall(r"steps\.([\w-]+)\.outputs", key):
        text += next(s["run"] for s in prepare["steps"] if s.get("id") == step_id)
    (hashed,) = re.findall(r"hashFiles\(([^)]*)\)", text)
    for folder in ("patches", "kernels", "images", "lab/guest_programs"):
        assert f"'{folder}/**'" in hashed, folder
    assert cache["with"]["path"] == ".lab-cache"
    assert "restore-keys" in cache["with"]


def test_github_lab_cache_lives_in_the_cached_folder(github):
    for name, job in github["jobs"].items():
        restores = _gh_uses(job, "actions/cache") + _gh_uses(job, "actions/cache/restore")
        if restores:
            assert any("LAB_CACHE=$GITHUB_WORKSPACE/.lab-cache" in r for r in _gh_runs(job)), name


def test_github_shards_upload_results_and_report_merges_them(github):
    jobs = github["jobs"]
    # Every shard's --results folder (shard 1 shown) must match exactly one merge.
    shard_results = [
        _arg(argv, "--results").replace("${{matrix.shard}}", "1")
        for name in ("suite", "bench") for run in _gh_runs(jobs[name]) for argv in _commands(run)
    ]
    merges = [argv for run in _gh_runs(jobs["report"]) for argv in _commands(run)]
    assert [argv[1] for argv in merges] == ["report", "report"]
    outs = [_arg(argv, "--out") for argv in merges]
    _assert_each_merged_once(shard_results, merges)
    for name in ("suite", "bench"):
        (upload,) = _gh_uses(jobs[name], "actions/upload-artifact")
        assert upload["with"]["path"].rstrip("/") == "results"
        assert upload["if"] == "${{ !cancelled() }}"
    assert set(jobs["report"]["needs"]) == {"suite", "bench"}
    (junit,) = _gh_uses(jobs["report"], "mikepenz/action-junit-report")
    for out in outs:
        assert fnmatch.fnmatch(f"{out}/junit.xml", junit["with"]["report_paths"])


# --- GitLab CI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gitlab() -> dict[str, Any]:
    return _load(GITLAB)


def _gl_jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.items() if k not in GITLAB_RESERVED and not k.startswith(".")}


def _gl_resolved(doc: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The job with its `extends` templates merged in (one level, as used here)."""
    merged: dict[str, Any] = {}
    for parent in [job.get("extends")] if isinstance(job.get("extends"), str) else []:
        merged.update(doc[parent])
    for key, value in job.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def test_gitlab_every_job_has_a_timeout(gitlab):
    jobs = _gl_jobs(gitlab)
    assert {"prepare", "test", "suite", "bench", "report"} <= set(jobs)
    for name, job in jobs.items():
        assert re.fullmatch(r"\d+ (minutes|hours?)", job.get("timeout", "")), name


def test_gitlab_parallel_jobs_shard_by_node_index(gitlab):
    sharded = 0
    for name, job in _gl_jobs(gitlab).items():
        for argv in _commands(job.get("script", [])):
            if "--shard" in argv:
                # parallel: N runs CI_NODE_INDEX = 1..N, so 1..N are covered.
                assert isinstance(job.get("parallel"), int) and job["parallel"] >= 2, name
                assert _arg(argv, "--shard") == "$CI_NODE_INDEX/$CI_NODE_TOTAL", name
                sharded += 1
    assert sharded == 2


def test_gitlab_cache_holds_lab_cache_and_only_prepare_pushes(gitlab):
    assert gitlab["variables"]["LAB_CACHE"] == "$CI_PROJECT_DIR/.lab-cache"
    for name, job in _gl_jobs(gitlab).items():
        cache = _gl_resolved(gitlab, job).get("cache")
        if not cache:
            continue
        assert cache["key"] and cache["paths"] == [".lab-cache/"], name
        assert cache["policy"] == ("pull-push" if name == "prepare" else "pull"), name


def test_gitlab_shards_keep_results_and_report_merges_them(gitlab):
    jobs = _gl_jobs(gitlab)
    for name in ("suite", "bench"):
        assert "results/" in jobs[name]["artifacts"]["paths"]
        assert jobs[name]["artifacts"]["when"] == "always"
    report = jobs["report"]
    assert set(report["needs"]) == {"suite", "bench"}
    assert report["when"] == "always"
    shard_results = [
        _arg(argv, "--results").replace("$CI_NODE_INDEX", "1")
        for name in ("suite", "bench") for argv in _commands(jobs[name]["script"])
    ]
    merges = list(_commands(report["script"]))
    outs = [_arg(argv, "--out") for argv in merges]
    _assert_each_merged_once(shard_results, merges)
    junit = report["artifacts"]["reports"]["junit"]
    assert sorted(junit) == sorted(f"{out}/junit.xml" for out in outs)


# --- both ------------------------------------------------------------------------


def _scripts(path: Path) -> list[str]:
    """Every shell line the template runs (steps, scripts, templates included)."""
    doc = _load(path)
    if path == GITHUB:
        chunks = [run for job in doc["jobs"].values() for run in _gh_runs(job)]
    else:
        chunks = [line for job in doc.values() if isinstance(job, dict)
                  for part in ("before_script", "script") for line in job.get(part, [])]
    return [line.strip() for chunk in chunks for line in chunk.splitlines()]


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_lab_commands_exist(path: Path):
    used = {m for line in _scripts(path) for m in LAB_CMD.findall(line)}
    assert {"test", "run", "report"} <= used
    assert used <= LAB_SUBCOMMANDS


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_make_targets_exist(path: Path):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    used = {m for line in _scripts(path) for m in MAKE_CMD.findall(line)}
    assert {"setup", "test"} <= used
    assert used <= targets
