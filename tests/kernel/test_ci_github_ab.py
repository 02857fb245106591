"""The GitHub A/B action (ci/github/ab/action.yml) run step by step, for real,
on a kernel-shaped git repository with a base and a head commit.

What GitHub would run: each `run:` step of the composite action in order,
with bash -eo pipefail, its `env:` expressions resolved from the inputs, the
action's path and the earlier steps' outputs, GITHUB_OUTPUT and
GITHUB_STEP_SUMMARY as files. The `uses:` steps (the caches, upload-artifact)
are GitHub's own and are not run here; the cache key step is, and its folders
must be where the lab built. A head with the patch passes; a head that claims
the feature without the patch fails the job, and the summary names the
failing case with its evidence.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "ci" / "github" / "ab"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _load_action() -> dict:
    ruamel = pytest.importorskip("ruamel.yaml")
    return ruamel.YAML(typ="safe").load((ACTION / "action.yml").read_text())


def read_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT's format: `name=value` lines and `name<<DELIM` blocks."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            name, delim = line.split("<<", 1)
            block = []
            for inner in lines:
                if inner == delim:
                    break
                block.append(inner)
            out[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
    return out


def run_action(workspace: Path, inputs: dict[str, str], tmp: Path
               ) -> tuple[int, str, dict[str, dict[str, str]]]:
    """The action's run: steps in order, as GitHub runs them; (last status,
    summary, the steps' outputs by id)."""
    action = _load_action()
    given = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    given.update(inputs)
    outputs: dict[str, dict[str, str]] = {}
    summary = tmp / "summary.md"
    summary.write_text("")
    status = 0

    def resolve(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("inputs."):
                return given[expr.removeprefix("inputs.")]
            if expr == "github.action_path":
                return str(ACTION)
            if m2 := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
                return outputs.get(m2.group(1), {}).get(m2.group(2), "")
            raise AssertionError(f"the test runner does not know ${{{{ {expr} }}}}")
        return EXPR.sub(one, text)

    for step in action["runs"]["steps"]:
        if "run" not in step:
            continue  # a `uses:` step: GitHub's own action
        assert step.get("shell") == "bash", step
        out_file = tmp / f"output-{len(outputs)}"
        out_file.write_text("")
        env = {**os.environ, "GITHUB_OUTPUT": str(out_file),
               "GITHUB_STEP_SUMMARY": str(summary),
               **{k: resolve(str(v)) for k, v in step.get("env", {}).items()}}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               resolve(step["run"])], cwd=workspace, env=env, text=True,
                              capture_output=True, timeout=2000)
        status = proc.returncode
        if "id" in step:
            outputs[step["id"]] = read_outputs(out_file.read_text())
        if status != 0:
            break
    return status, summary.read_text(), outputs


def test_a_head_with_the_patch_passes_and_one_without_fails_naming_the_case(
        kernel_repo, git, tmp_path, no_qemu_leak):
    repo = kernel_repo["repo"]
    common = {"base": str(kernel_repo["base"]), "expect": "parallel-direct-writes",
              "cases": "parallel-nonextending", "accel": "auto"}
    git(repo, "checkout", "-q", str(kernel_repo["good"]))
    status, summary, outputs = run_action(repo, {**common, "results": str(tmp_path / "good")},
                                          tmp_path)
    assert status == 0, summary
    # The cache key names the pair, its folders are the ones the lab built in.
    good = outputs["key"]
    assert good["key"].startswith(good["restore-prefix"])
    assert good["restore-prefix"].startswith(good["restore-any"])
    assert good["restore-any"].startswith("kernel-lab-tree-")
    assert good["input-base"] == str(kernel_repo["base"])
    assert good["input-head"] == str(kernel_repo["good"])
    folders = [Path(f) for f in good["folders"].splitlines()]
    assert [f.parent.name for f in folders] == ["src", "build"]
    assert all(f.is_dir() and any(f.iterdir()) for f in folders), folders
    images = [Path(f) for f in good["image-folders"].splitlines()]
    assert [f.name for f in images] == ["images", "guest-bin"] and all(f.is_dir() for f in images)
    assert summary.startswith("## kernel-lab A/B: passed (exit 0)")
    assert "#### patched: claims held" in summary and "Claims: parallel-direct-writes" in summary
    git(repo, "checkout", "-q", str(kernel_repo["bad"]))
    (tmp_path / "bad").mkdir()
    status, summary, outputs = run_action(repo, {**common, "results": str(tmp_path / "bad")},
                                          tmp_path / "bad")
    assert status == 1, summary
    # Another head on the same base: its own key, the base's fall-back shared.
    bad = outputs["key"]
    assert bad["key"] != good["key"] and bad["restore-prefix"] == good["restore-prefix"]
    assert bad["folders"] == good["folders"]
    assert summary.startswith("## kernel-lab A/B: a check failed (exit 1)")
    assert "#### FAIL parallel-nonextending on patched" in summary
    assert "observed: 1 of 8 WRITEs in flight" in summary
    assert not git(repo, "status", "--porcelain")  # the tree under test is untouched
