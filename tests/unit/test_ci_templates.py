"""The CI templates in ci/: schema-valid, lint-clean, and shaped the way ci/README.md says.

The GitHub workflow is checked by actionlint (expressions, job outputs, action
inputs) and zizmor (security: pinned actions, credentials, permissions,
template injection), both offline; the GitLab pipeline by its JSON schema here
and, for real, by gitlab-ci-local in tests/kernel/test_ci_gitlab.py.
"""

from __future__ import annotations

import fnmatch
import json
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
# The A/B a kernel repository calls: a reusable workflow and a composite action.
AB_WORKFLOW = REPO / ".github" / "workflows" / "kernel-ab.yml"
AB_ACTION = REPO / "ci" / "github" / "ab" / "action.yml"
BIN = Path(sys.executable).parent
CHECK_JSONSCHEMA = BIN / "check-jsonschema"
ACTIONLINT = BIN / "actionlint"
ZIZMOR = BIN / "zizmor"

# The lab's subcommands. A fixed list rather than lab.cli.build_parser(): some
# subcommands are being added concurrently, and this test must not depend on that.
LAB_SUBCOMMANDS = {"build", "image", "boot", "ssh", "doctor", "bench", "run", "test",
                   "bisect", "report", "compare", "mutate"}
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


def _tool(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not path.exists():
        pytest.skip(f"{path} missing (make setup installs the dev extra)")
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def _commands(script: str | list[str]) -> Iterator[list[str]]:
    """Each `lab` command line in a script, split like a shell would."""
    lines = [script] if isinstance(script, str) else script
    for text in lines:
        for line in text.splitlines():
            if ".venv/bin/lab " in line:
                yield shlex.split(GH_EXPR.sub(r"${{\1}}", line.split("||")[0]))


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --- schemas and linters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", GITHUB),
        # The stricter variant: every job must set timeout-minutes.
        ("custom.github-workflows-require-timeout", GITHUB),
        ("vendor.gitlab-ci", GITLAB),
        ("vendor.github-workflows", AB_WORKFLOW),
        ("vendor.github-actions", AB_ACTION),
    ],
)
def test_template_matches_its_schema(schema: str, path: Path):
    result = _tool(CHECK_JSONSCHEMA, "--builtin-schema", schema, str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [GITHUB, AB_WORKFLOW], ids=lambda p: p.name)
def test_github_workflow_is_actionlint_clean(path: Path):
    result = _tool(ACTIONLINT, "-no-color", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("paths", [(GITHUB,), (AB_WORKFLOW, AB_ACTION)],
                         ids=["lab-pipeline", "ab"])
def test_github_workflow_is_zizmor_clean(paths: tuple[Path, ...]):
    result = _tool(ZIZMOR, "--offline", "--no-progress", *map(str, paths))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("tool", "args", "path", "old", "new"),
    [
        (CHECK_JSONSCHEMA, ["--builtin-schema", "vendor.github-workflows"], GITHUB,
         "timeout-minutes: 90", "timeout-minutes: ninety"),
        (CHECK_JSONSCHEMA, ["--builtin-schema", "vendor.gitlab-ci"], GITLAB,
         "parallel: &shards 2", "parallel: &shards two"),
        # An output no step sets.
        (ACTIONLINT, ["-no-color"], GITHUB,
         "${{ steps.key.outputs.key }}", "${{ steps.nokey.outputs.key }}"),
        # An action by a movable tag instead of a commit.
        (ZIZMOR, ["--offline", "--no-progress"], GITHUB,
         "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6.1.0",
         "actions/checkout@v6"),
    ],
    ids=["schema-github", "schema-gitlab", "actionlint", "zizmor"],
)
def test_each_check_rejects_a_broken_copy(tool, args, path, old, new, tmp_path: Path):
    # Proves the checks above are not vacuous (a wrong schema name, a linter
    # that reads nothing).
    text = path.read_text()
    assert old in text, f"update this test: {old!r} is no longer in {path.name}"
    broken = tmp_path / path.name
    broken.write_text(text.replace(old, new, 1))
    assert _tool(tool, *args, str(broken)).returncode != 0


# --- GitHub Actions --------------------------------------------------------------


@pytest.fixture(scope="module")
def github() -> dict[str, Any]:
    return _load(GITHUB)


def _gh_runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job.get("steps", []) if "run" in s]


def _gh_uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").split("@")[0] == action]


def test_github_every_job_has_a_timeout_and_least_permissions(github):
    assert github["permissions"] == {}
    for name, job in github["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and job["timeout-minutes"] > 0, name
        # No checks: write (fork pull requests never get it), nothing to write.
        assert job["permissions"] == {"contents": "read"}, name
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_github_runs_are_grouped_per_ref(github):
    assert "${{ github.ref }}" in github["concurrency"]["group"]
    assert github["concurrency"]["cancel-in-progress"] is True


def test_github_shard_count_is_written_once(github):
    n = int(github["env"]["SHARDS"])
    prepare = github["jobs"]["prepare"]
    (step,) = [s for s in prepare["steps"] if s.get("id") == "shards"]
    # The step's own shell line, run here: the matrix it produces is 1..N.
    line = step["run"].replace('>> "$GITHUB_OUTPUT"', "")
    made = subprocess.run(["bash", "-c", line], env={"SHARDS": str(n), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=10, check=True).stdout
    assert made.strip() == f"shards=[{','.join(map(str, range(1, n + 1)))}]"
    sharded = 0
    for name, job in github["jobs"].items():
        for run in _gh_runs(job):
            for argv in _commands(run):
                if "--shard" not in argv:
                    continue
                assert _arg(argv, "--shard") == "$SHARD/$SHARDS", name
                assert job["env"]["SHARD"] == "${{ matrix.shard }}", name
                assert job["strategy"]["matrix"]["shard"] == (
                    "${{ fromJSON(needs.prepare.outputs.shards) }}"), name
                assert job["strategy"].get("fail-fast") is False, name
                sharded += 1
    assert sharded == 2  # lab test and lab run
    assert not re.search(r"shard: \[\d", GITHUB.read_text())  # no literal list anywhere


def test_github_cache_key_comes_from_the_lab(github):
    prepare = github["jobs"]["prepare"]
    (key_step,) = [s for s in prepare["steps"] if s.get("id") == "key"]
    assert ".venv/bin/lab build --print-cache-key" in key_step["run"]
    assert '"$GITHUB_OUTPUT"' in key_step["run"]
    (restore,) = _gh_uses(prepare, "actions/cache/restore")
    (save,) = _gh_uses(prepare, "actions/cache/save")
    assert restore["with"]["key"] == save["with"]["key"] == "${{ steps.key.outputs.key }}"
    assert restore["with"]["restore-keys"] == "${{ steps.key.outputs.restore-prefix }}"
    assert save["if"] == "steps.restore.outputs.cache-hit != 'true'"
    # Only prepare saves; every job that restores uses prepare's key.
    for name, job in github["jobs"].items():
        if name == "prepare":
            continue
        assert not _gh_uses(job, "actions/cache") and not _gh_uses(job, "actions/cache/save")
        for r in _gh_uses(job, "actions/cache/restore"):
            assert r["with"]["key"] == "${{ needs.prepare.outputs.cache-key }}", name
            assert any("LAB_CACHE=$GITHUB_WORKSPACE/.lab-cache" in s for s in _gh_runs(job))


def test_the_key_the_workflow_gets_from_the_lab():
    out = subprocess.run([str(BIN / "lab"), "build", "--print-cache-key"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    values = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert values["key"].startswith(values["restore-prefix"])
    for name in ("kernel-source", "compiler", "build-recipe", "series", "config-fragments",
                 "image-recipe", "guest-programs"):
        assert values[f"input-{name}"], name
    assert values["input-compiler"].startswith("gcc")


def test_github_fails_fast_without_kvm(github):
    assert github["env"]["LAB_ACCEL"] == "kvm"
    for name, job in github["jobs"].items():
        if any(".venv/bin/lab " in r or "make test" in r for r in _gh_runs(job)):
            if name == "report":
                continue  # merging boots nothing
            assert any("accel = \\\"%s\\\"" in r or 'accel = "%s"' in r for r in _gh_runs(job))
    assert any("lab ssh baseline -- true" in r for r in _gh_runs(github["jobs"]["prepare"]))


def test_github_report_merges_every_shard_and_skips_after_a_failed_prepare(github):
    jobs = github["jobs"]
    report = jobs["report"]
    assert set(report["needs"]) == {"prepare", "suite", "bench"}
    assert "needs.prepare.result == 'success'" in report["if"]
    assert "!cancelled()" in report["if"]
    shard_results = [
        _arg(argv, "--results").replace("$SHARD", "1")
        for name in ("suite", "bench") for run in _gh_runs(jobs[name]) for argv in _commands(run)
    ]
    merges = [argv for run in _gh_runs(report) for argv in _commands(run)]
    assert [argv[1] for argv in merges] == ["report", "report"]
    for results in shard_results:
        hits = [argv for argv in merges
                if any(fnmatch.fnmatch(results, g)
                       for g in argv[argv.index("--merge") + 1: argv.index("--out")])]
        assert len(hits) == 1, results
    for name in ("suite", "bench"):
        (upload,) = _gh_uses(jobs[name], "actions/upload-artifact")
        assert upload["with"]["path"].rstrip("/") == "results"
        assert upload["if"] == "${{ !cancelled() }}"
    assert any("ci/junit_summary.py" in r for r in _gh_runs(report))


def test_junit_summary_annotates_failures(tmp_path: Path):
    d = tmp_path / "merged" / "test"
    d.mkdir(parents=True)
    (d / "junit.xml").write_text(
        '<testsuites><testsuite name="lab" tests="3">'
        '<testcase classname="baseline" name="append"/>'
        '<testcase classname="v1" name="truncate-race">'
        '<failure message="2 extending writes overlapped">details</failure></testcase>'
        '<testcase classname="v1" name="flag-off"><skipped message="not run"/></testcase>'
        "</testsuite></testsuites>")
    summary = tmp_path / "summary.md"
    out = subprocess.run([sys.executable, str(REPO / "ci" / "junit_summary.py"), "--summary",
                          str(summary), str(d / "junit.xml")],
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == "::error title=test: v1::truncate-race::2 extending writes overlapped\n"
    text = summary.read_text()
    assert "| test | 1 | 1 | 1 |" in text
    assert "- `test` v1::truncate-race: 2 extending writes overlapped" in text


# --- GitLab CI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gitlab() -> dict[str, Any]:
    return _load(GITLAB)


def _gl_jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.items() if k not in GITLAB_RESERVED and not k.startswith(".")}


def _gl_resolved(doc: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The job with its `extends` template merged in (one level, as used here)."""
    merged: dict[str, Any] = dict(doc[job["extends"]]) if "extends" in job else {}
    for key, value in job.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def test_gitlab_every_job_has_a_timeout(gitlab):
    jobs = _gl_jobs(gitlab)
    assert {"prepare", "test", "suite", "bench", "merge-test", "merge-bench"} == set(jobs)
    for name, job in jobs.items():
        job = _gl_resolved(gitlab, job)
        assert re.fullmatch(r"\d+ (minutes|hours?)", job.get("timeout", "")), name


def test_gitlab_cache_is_the_labs_own_at_a_fixed_host_path(gitlab):
    # No GitLab cache (per-slot on Docker runners; pull-push zips gigabytes).
    assert "cache" not in gitlab
    for name, job in gitlab.items():
        assert not (isinstance(job, dict) and "cache" in job), name
    cache = gitlab["variables"]["LAB_CACHE"]
    # Fixed, outside the project folder, which moves with the runner slot
    # (kbuild records its build folder's path).
    assert cache.startswith("/") and "$" not in cache
    assert f'volumes = ["{cache}:{cache}"]' in GITLAB.read_text()


def test_gitlab_shards_by_node_index_with_the_count_written_once(gitlab):
    text = GITLAB.read_text()
    assert len(re.findall(r"parallel: &shards \d+", text)) == 1
    assert len(re.findall(r"parallel: \*shards", text)) == 1
    assert "parallel: 2" not in text
    sharded = 0
    for name, job in _gl_jobs(gitlab).items():
        for argv in _commands(job.get("script", [])):
            if "--shard" in argv:
                assert isinstance(job.get("parallel"), int) and job["parallel"] >= 2, name
                assert _arg(argv, "--shard") == "$CI_NODE_INDEX/$CI_NODE_TOTAL", name
                # A failed check (exit 1) still lets the merge report it.
                assert job["allow_failure"] == {"exit_codes": [1]}, name
                sharded += 1
    assert sharded == 2


def test_gitlab_only_lab_jobs_hold_a_kvm_runner(gitlab):
    assert "tags" not in gitlab.get("default", {})
    for name, job in _gl_jobs(gitlab).items():
        resolved = _gl_resolved(gitlab, job)
        if name.startswith("merge-"):
            assert "tags" not in resolved, name
        else:
            assert resolved["tags"] == ["kvm"], name
            assert any('accel = "%s"' in line and "$LAB_ACCEL" in line
                       for line in resolved["before_script"]), name
    assert gitlab["variables"]["LAB_ACCEL"] == "kvm"


def test_gitlab_merges_pick_up_every_shard_once(gitlab):
    jobs = _gl_jobs(gitlab)
    kinds = {}
    for name in ("merge-test", "merge-bench"):
        job = _gl_resolved(gitlab, jobs[name])
        kind = job["variables"]["KIND"]
        kinds[kind] = name
        (argv,) = _commands([line.replace("$KIND", kind) for line in job["script"]])
        assert argv[1] == "report"
        assert _arg(argv, "--merge") == f"results/{kind}-shard-*"
        assert _arg(argv, "--out") == f"results/merged/{kind}"
        assert job["artifacts"]["reports"]["junit"].replace("$KIND", kind) == (
            f"results/merged/{kind}/junit.xml")
        assert job.get("when", "on_success") == "on_success"  # not after a failed prepare
        assert "prepare" in job["needs"]
    for shard_job, kind in (("suite", "test"), ("bench", "bench")):
        (argv,) = _commands(jobs[shard_job]["script"])
        results = _arg(argv, "--results").replace("$CI_NODE_INDEX", "1")
        assert fnmatch.fnmatch(results, f"results/{kind}-shard-*")
        assert shard_job in _gl_resolved(gitlab, jobs[kinds[kind]])["needs"]
        assert jobs[shard_job]["artifacts"]["when"] == "always"


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
    assert {"test", "run", "report", "build", "ssh"} <= used
    assert used <= LAB_SUBCOMMANDS


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_make_targets_exist(path: Path):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    used = {m for line in _scripts(path) for m in MAKE_CMD.findall(line)}
    assert {"setup", "test"} <= used
    assert used <= targets


# --- the A/B a kernel repository calls (reusable workflow + composite action) ---------

def test_an_input_reaches_a_script_only_through_env(tmp_path: Path):
    # Template injection: a PR's text in ${{ }} inside run: would be executed.
    text = AB_ACTION.read_text()
    broken = tmp_path / "action.yml"
    script = 'bash "$LAB/ci/ab.sh"'
    broken.write_text(text.replace(script, script + " ${{ inputs.expect }}", 1))
    assert broken.read_text() != text
    assert _tool(ZIZMOR, "--offline", "--no-progress", str(broken)).returncode != 0
    for step in _load(AB_ACTION)["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


def test_the_caller_in_the_workflow_comment_is_at_most_15_lines():
    lines = AB_WORKFLOW.read_text().splitlines()
    start = lines.index("#   on: pull_request")
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "#")
    caller = lines[start:end]
    assert len(caller) <= 15 and any("uses: OWNER/kernel-lab" in line for line in caller)


def test_ab_summary_leads_with_the_outcome_and_names_failed_checks(tmp_path: Path):
    sys.path.insert(0, str(REPO / "ci"))
    try:
        import ab_summary
    finally:
        sys.path.pop(0)
    (tmp_path / "report.md").write_text(
        "# report\n\n## Verdict\n\n### patched: claims contradicted\n\n## Checks\n\n"
        "| check |\n\n## Inputs\n\n- run: x\n")
    (tmp_path / "results.json").write_text(json.dumps({"checks": [
        {"name": "flag-off", "variant": "patched", "passed": True},
        {"name": "parallel-nonextending", "variant": "patched", "passed": False,
         "expected": "8 in flight", "observed": "1 of 8 WRITEs in flight",
         "console_excerpt": "[ 1.0] WARNING: x\n"}]}))
    text = ab_summary.summary(tmp_path, 1)
    assert text.startswith("## kernel-lab A/B: a check failed (exit 1)\n")
    assert "#### patched: claims contradicted" in text and "## Inputs" not in text
    assert "#### FAIL parallel-nonextending on patched" in text and "flag-off" not in text
    assert "[ 1.0] WARNING: x" in text
    assert "No report" in ab_summary.summary(tmp_path / "none", 3)


GITLAB_AB = REPO / "templates" / "kernel-ab.yml"


@pytest.fixture()
def component() -> tuple[dict[str, Any], dict[str, Any]]:
    """The GitLab component's two documents: its `spec:` and its jobs."""
    ruamel = pytest.importorskip("ruamel.yaml")
    spec, jobs = ruamel.YAML(typ="safe").load_all(GITLAB_AB.read_text())
    return spec, jobs


def test_the_gitlab_component_has_inputs_and_a_valid_job(component, tmp_path: Path):
    spec, jobs = component
    inputs = spec["spec"]["inputs"]
    assert {"lab-repository", "lab-ref", "expect", "kconfig", "cases", "accel"} <= set(inputs)
    # The job alone, with the inputs' places filled, against GitLab's schema.
    body = GITLAB_AB.read_text().split("\n---\n", 1)[1]
    job = tmp_path / ".gitlab-ci.yml"
    job.write_text(re.sub(r"\$\[\[ inputs\.([\w-]+) \]\]", r"input-\1", body))
    result = _tool(CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", str(job))
    assert result.returncode == 0, result.stdout + result.stderr
    # Inputs reach the script as variables only, never spliced into a command.
    assert all("$[[" not in line for line in jobs["kernel-lab-ab"]["script"])
    assert jobs["kernel-lab-ab"]["artifacts"]["reports"]["junit"] == "results/ab/junit.xml"


def test_the_gitlab_component_keeps_the_labs_cache_at_a_fixed_path(component, gitlab):
    spec, jobs = component
    default = spec["spec"]["inputs"]["cache-dir"]["default"]
    # The same fixed host path as the lab's own pipeline (a runner volume),
    # never under the project folder, which moves with the runner slot.
    assert default == gitlab["variables"]["LAB_CACHE"]
    job = jobs["kernel-lab-ab"]
    assert job["variables"]["LAB_CACHE"] == "$[[ inputs.cache-dir ]]"
    assert "cache" not in job
    assert f'volumes = ["{default}:{default}"]' in GITLAB_AB.read_text()
