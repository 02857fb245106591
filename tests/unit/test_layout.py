"""The package's shape: one folder per stage, imports flowing one way.

Every import inside lab/ (function-local ones included) is read from the
source; a cycle, or an import from a lower stage of the pipeline to a higher
one, fails. Function-local imports are allowed only where a heavy dependency
is deferred on purpose (DEFERRED)."""
from __future__ import annotations

import ast
from pathlib import Path

import lab
from lab.kernel.features import KNOWN

TOP = Path(lab.__file__).resolve().parent

# Floors, lowest first: a module may import from its own floor or below.
FLOORS: list[tuple[str, ...]] = [
    ("lab.errors", "lab.ui"),
    ("lab.host",),
    ("lab.config", "lab.results", "lab.shard", "lab.verdict"),
    ("lab.kernel",),
    ("lab.vm",),
    ("lab.guest",),
    ("lab.pipeline",),
    ("lab.suite", "lab.bench"),
    ("lab.report",),
    ("lab.bisect", "lab.mutate"),
    ("lab.jobs",),
    ("lab.usage",),  # the command line's grammar (lab.jobs.soak adds fsx's options)
    ("lab.cli", "lab.pytest_plugin"),
]
STAGES = ("host", "kernel", "vm", "guest", "suite", "bench", "report", "bisect", "mutate", "jobs")
# Where a function-local import is on purpose: matplotlib is heavy and only the
# plots need it; the pytest plugin is loaded by every pytest in a venv that has
# the lab installed, so it imports the lab (fabric, paramiko, qemu.qmp) only
# when a lab fixture is used.
DEFERRED = {"lab.report.plots", "lab.pytest_plugin"}


def _module(path: Path) -> str:
    rel = path.relative_to(TOP.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> tuple[set[str], bool]:
    """The lab modules `path` imports, and whether any import is function-local."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    local = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "lab" else []
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        local = local or node.col_offset > 0  # inside a def or a block
        found |= {n for n in names if n.startswith("lab")}
    return found, local


def _graph() -> tuple[dict[str, set[str]], set[str]]:
    modules = {_module(p): p for p in TOP.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    local: set[str] = set()
    for name, path in modules.items():
        found, has_local = _imports(path)
        # `from lab.kernel import build` names the module lab.kernel.build.
        graph[name] = {m for m in found if m in modules and m != name}
        if has_local:
            local.add(name)
    return graph, local


def _floor(module: str) -> int:
    for i, floor in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in floor):
            return i
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def test_every_module_is_on_a_floor_and_imports_only_downwards():
    graph, _ = _graph()
    upward = [f"{m} -> {d}" for m, deps in graph.items() if m != "lab" for d in deps
              if d != "lab" and _floor(d) > _floor(m)]
    assert not upward, "imports against the flow:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_cycle():
    graph, _ = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif not state.get(d):
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_only_where_a_heavy_dependency_is_deferred():
    _, local = _graph()
    assert local <= DEFERRED, sorted(local - DEFERRED)


def test_the_stages_are_folders_and_the_top_holds_only_entry_points_and_shared_modules():
    for stage in STAGES:
        assert (TOP / stage / "__init__.py").is_file(), stage
    top = sorted(p.stem for p in TOP.glob("*.py"))
    assert top == ["__init__", "cli", "config", "errors", "pipeline", "pytest_plugin", "results",
                   "shard", "ui", "usage", "verdict"]


def test_a_feature_name_is_written_in_code_once():
    """lab/kernel/features.py defines the names; code elsewhere uses its constants."""
    home = TOP / "kernel" / "features.py"
    found = [f"{p.relative_to(TOP.parent)}:{node.lineno} {node.value}"
             for p in TOP.rglob("*.py") if p != home
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and node.value in KNOWN]
    assert not found, "\n".join(found)


def test_no_decision_reads_a_checks_free_form_details():
    """What the lab decides from (sub-results, the A/B reading, a time-out, the
    case's number, the kernel's failure) is a typed field of CheckResult;
    `details` is evidence to show. A read of a check's details by key is the
    schema-less dict coming back."""
    found = [f"{p.relative_to(TOP.parent)}:{node.lineno}"
             for p in TOP.rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text()))
             if _reads_details(node)]
    assert not found, "\n".join(found)


def _reads_details(node: ast.AST) -> bool:
    """`x.details[...]` or `x.details.get(...)` (a check's or an observation's)."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        target = node.value
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "get"):
        target = node.func.value
    else:
        return False
    return isinstance(target, ast.Attribute) and target.attr == "details"


def test_every_command_of_the_grammar_has_its_handler_and_no_other():
    import argparse

    from lab import cli, usage

    sub = next(a for a in usage.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli.COMMANDS)
