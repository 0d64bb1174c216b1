"""The code's shape: restructuring changes no deployed resource, and no module imports itself in a circle."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, plan

GOLDEN = Path(__file__).resolve().parent / "golden"
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
# The project's own packages: (import name, directory whose parent is on sys.path when it runs).
PACKAGES = {
    "components": ROOT / "components",
    "mediastack_cli": ROOT / "mediastack_cli",
    "mediastack_policies": ROOT / "policies" / "mediastack_policies",
    "mediastack_vocabulary": ROOT / "policies" / "mediastack_vocabulary",
}


def plan_document(stack: str) -> dict[str, Any]:
    """URN -> type, parent and inputs (secrets already masked by the offline plan), in a stable order."""
    doc = plan(stack).to_json()
    return {
        r["urn"]: {"type": r["type"], "parent": r["parent"], "inputs": r["inputs"]}
        for r in sorted(doc["resources"], key=lambda r: r["urn"])
    }


@pytest.mark.parametrize("stack", STACKS)
def test_plan_matches_the_golden_copy(stack: str) -> None:
    """Every example stack deploys exactly the resources recorded in tests/golden/<stack>.json.

    A change that means to alter resources regenerates the copies with
    `MEDIASTACK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_layout.py` and shows the diff in review.
    """
    path = GOLDEN / f"{stack}.json"
    current = plan_document(stack)
    if os.environ.get("MEDIASTACK_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    golden = json.loads(path.read_text())
    assert "[secret]" in path.read_text(), "the golden copy holds secrets masked, never their values"
    missing = sorted(set(golden) - set(current))
    added = sorted(set(current) - set(golden))
    assert not missing, f"{stack}: resources no longer planned: {missing}"
    assert not added, f"{stack}: resources newly planned: {added}"
    changed = [urn for urn in golden if golden[urn] != current[urn]]
    assert not changed, f"{stack}: resources with other type, parent or inputs: {changed}"


def _module_name(path: Path, package: str, root: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any depth of the file (function-level imports count)."""
    modules: dict[str, Path] = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            modules[_module_name(path, package, root)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets.add(prefix)
                targets.update(f"{prefix}.{alias.name}" for alias in node.names)
        # `from components import x` names module components.x when it exists, else the package itself.
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    assert import_graph()["components.stack"], "the stack component imports project modules"


def test_no_import_cycle_inside_the_project() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in found)


def test_resolution_names_no_service() -> None:
    """What is special about a service is a field of its catalog entry: resolution reads fields, never names."""
    from components.catalog import CATALOG

    named = {}
    for module in ("resolve.py",):
        tree = ast.parse((ROOT / "components" / module).read_text())
        found = sorted(
            {
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in CATALOG
            }
        )
        if found:
            named[module] = found
    assert named == {}


def test_host_scripts_pass_shellcheck() -> None:
    """Shell kept as shell: every .sh source beside the code that installs it is clean for shellcheck."""
    from conftest import require_tool

    shellcheck = require_tool("shellcheck")
    import subprocess

    sources = sorted((ROOT / "components").rglob("*.sh"))
    assert sources, "the host scripts live in .sh files"
    result = subprocess.run([shellcheck, "--shell=sh", *map(str, sources)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _shell_strings() -> set[tuple[str, str]]:
    """(file, function) of each Python string in components/ that is more than 20 lines of shell."""
    found = set()
    for path in sorted((ROOT / "components").rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.Module)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    source = ast.get_source_segment(text, node) or ""
                    lines = source.count("\n") + 1
                    if lines > 20 and any(mark in source for mark in ("set -e", "#!/bin/sh", "\nfi\n", "esac")):
                        found.add((path.name, getattr(fn, "name", "<module>")))
    return {(f, n) for f, n in found if n != "<module>" or not any(g == f and m != "<module>" for g, m in found)}


# Shell still inside Python strings, to become .sh files like backup_tool.sh. The list only shrinks.
SHELL_IN_PYTHON = {
    ("backup.py", "backup_create"),
    ("host_tuning.py", "daemon_create"),
    ("host_tuning.py", "gpu_detect_script"),
    ("replica.py", "replica_init"),
    ("shared_storage.py", "volume_delete"),
    ("storage.py", "create_script"),
    ("storage.py", "delete_script"),
}


def test_no_new_shell_inside_python() -> None:
    assert _shell_strings() == SHELL_IN_PYTHON
