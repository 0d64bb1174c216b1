"""The code's shape: restructuring changes no deployed resource, and no module imports itself in a circle."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, plan

GOLDEN = Path(__file__).resolve().parent / "golden"
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
# The project's own packages: (import name, directory whose parent is on sys.path when it runs).
PACKAGES = {
    "components": ROOT / "components",
    "mediastack": ROOT / "mediastack",
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
    assert import_graph()["mediastack.single.stack"], "the stack component imports project modules"


def test_no_import_cycle_inside_the_project() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in found)


def test_resolution_names_no_service() -> None:
    """What is special about a service is a field of its catalog entry: resolution reads fields, never names."""
    from mediastack.catalog.services import CATALOG

    named = {}
    for module in ("resolve.py", "resolved.py", "checks.py", "routing.py"):
        tree = ast.parse((ROOT / "mediastack" / "plan" / module).read_text())
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

    sources = sorted((ROOT / "mediastack").rglob("*.sh"))
    assert sources, "the host scripts live in .sh files"
    result = subprocess.run([shellcheck, "--shell=sh", *map(str, sources)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# A line only shell writes: a shebang or `set -e`/`set -u`; one that opens or closes a compound command (`fi`, `done`,
# `esac`, `then`, `do`, `else`, `...; then`, `...; do`, a case branch's `;;`); a quoted expansion ("$x", "${x}",
# "$(...)"), a here-document, a redirection to /dev/null or `|| true`. Python (`else:`, `for x in y:`), nginx,
# systemd units, YAML and INI have at most a stray one.
_SHELL_LINE = re.compile(
    r"^\s*(#!/bin/(ba)?sh\b|set -[a-z]*[eu]|(fi|done|esac|then|do|else)\s*(;.*|[|&<>].*)?$|.*;\s*(then|do)$|.*;;$)"
    r"|\"\$[A-Za-z_{(]|<<-?\s*'?[A-Z]+'?\s*$|>\s*/dev/null|\|\| true\b"
)
SHELL_LIMIT = 20  # lines of shell a Python string may hold (the "about 20")


def is_shell(text: str) -> bool:
    """A text is shell when it starts with a shell's #! line or has three lines that only shell writes."""
    lines = text.splitlines()
    if lines and lines[0].startswith(("#!/bin/sh", "#!/bin/bash")):
        return True
    return sum(1 for line in lines if _SHELL_LINE.search(line)) >= 3


def shell_strings(path: Path) -> set[tuple[str, str]]:
    """(file, function) of each string literal in a Python file (a plain or f-string; adjacent literals are one)
    that is shell and spans more than SHELL_LIMIT lines of source. Its text is the literal's source, so an f-string
    counts with its `{...}` fields as written."""
    text = path.read_text()
    found = set()

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = node.name
        if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            spans = (node.end_lineno or node.lineno) - node.lineno + 1
            source = (ast.get_source_segment(text, node) or "") if spans > SHELL_LIMIT else ""
            if source and is_shell(source.lstrip("rbfRBF").strip("\"'")):
                found.add((path.name, scope))
            return  # an f-string's parts are part of it
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(text), "<module>")
    return found


def _shell_strings() -> set[tuple[str, str]]:
    return {
        found for d in ("mediastack", "mediastack_cli") for p in (ROOT / d).rglob("*.py") for found in shell_strings(p)
    }


def test_scripts_name_the_paths_the_program_uses() -> None:
    """A .sh file that names a path or name itself (so that its text, and the deployed step or Swarm config made from
    it, stays as it was) names the one the program uses."""
    from mediastack.generate.replica import PRIMARY, SLOT
    from mediastack.host.backup import NAME, STATE_DIR, TOOL
    from mediastack.host.directories import CREATED_RECORD

    def source(name: str) -> str:
        return (ROOT / "mediastack" / "host" / name).read_text()

    for name in ("storage_create.sh", "storage_delete.sh"):
        assert f'record="$ROOT{CREATED_RECORD}"' in source(name), name
    assert f"rmdir -p {CREATED_RECORD.lstrip('/').rsplit('/', 1)[0]} " in source("storage_delete.sh")
    install = source("backup_install.sh")
    assert f'state="$ROOT{STATE_DIR}"' in install and f"# mediastack: install {NAME} with its timers." in install
    assert f"  {TOOL} init\n  systemctl enable --now --quiet {NAME}.timer {NAME}-check.timer\n" in install
    init = source("replica_init.sh")
    assert f'primary="${{REPLICA_PRIMARY:-{PRIMARY}}}"' in init
    assert init.count(SLOT) == 3 and f"slot_name = '{SLOT}'" in init and f"--slot={SLOT} " in init


# Shell still inside Python strings, to become .sh files like backup_tool.sh. The list only shrinks.
SHELL_IN_PYTHON = {
    ("shared_storage.py", "volume_delete"),  # the volume delete: still to become a .sh file
}


def test_no_new_shell_inside_python() -> None:
    """No Python string in mediastack/ or mediastack_cli/ holds more than about 20 lines of shell."""
    assert _shell_strings() == SHELL_IN_PYTHON


def test_the_shell_detector_tells_shell_from_the_other_texts(tmp_path: Path) -> None:
    """Every .sh source reads as shell; the Python, nginx, systemd and YAML texts the program writes do not; and
    a shell string in a function is found once it passes the limit."""
    from conftest import raw_config
    from mediastack.generate.files import artwork_cache_config, prometheus_config
    from mediastack.host.backup import backup_plan, backup_units
    from mediastack.plan.loading import parse_stack_config
    from mediastack.plan.resolve import resolve

    sources = sorted((ROOT / "mediastack").rglob("*.sh"))
    assert sources and all(is_shell(p.read_text()) for p in sources)
    stack = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")
    plan = backup_plan(stack)
    assert plan is not None
    merge = (ROOT / "mediastack/host/daemon_create.sh").read_text().split("<<'MERGE'\n")[1].split("\nMERGE\n")[0]
    others = [merge, artwork_cache_config(stack), prometheus_config(stack), *backup_units(plan).values()]
    assert all(len(text.splitlines()) > 8 and not is_shell(text) for text in others)
    lines = ["set -eu"] + ["if true; then", "  echo yes", "fi"] * 7
    for spans, expected in ((SHELL_LIMIT, set()), (SHELL_LIMIT + 1, {("m.py", "make")})):
        text = "\n".join(lines[: spans - 1])  # the literal spans these lines and the one with its closing quotes
        (tmp_path / "m.py").write_text(f'def make() -> str:\n    return f"""{text}\n"""\n')
        assert shell_strings(tmp_path / "m.py") == expected, spans


# The layers of the data flow, lowest first (docs/architecture.md): a module imports its own layer or lower ones.
LAYERS = (
    ("mediastack_vocabulary",),
    ("mediastack.model", "mediastack.quoting"),
    ("mediastack.catalog",),
    ("mediastack.plan",),
    ("mediastack.generate", "mediastack.host"),
    ("mediastack.wiring",),
    ("mediastack.single", "mediastack.swarm"),
    ("mediastack", "components", "mediastack_cli", "mediastack_policies"),
)


def layer_of(module: str) -> int:
    """The layer of a module: the longest matching prefix decides (mediastack.plan.resolve is in plan)."""
    best = max(
        ((len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
         if module == prefix or module.startswith(prefix + ".")),
        default=None,
    )  # fmt: skip
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[1]


def test_each_layer_imports_only_itself_and_the_layers_below() -> None:
    upward = sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module) and not target.endswith("__init__")
        and not (module.startswith("mediastack.") and target == "mediastack")
    )  # fmt: skip
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_the_policy_pack_imports_nothing_of_the_program() -> None:
    """The pack starts from policies/ with its own virtualenv: the vocabulary is all it shares with the program."""
    graph = import_graph()
    reached = {t for m, ts in graph.items() if m.startswith("mediastack_policies") for t in ts}
    assert {t.split(".")[0] for t in reached} <= {"mediastack_policies", "mediastack_vocabulary"}, sorted(reached)


def test_every_package_is_installed() -> None:
    """pyproject lists packages explicitly: a new folder of the program must be listed, or an install lacks it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("mediastack", "mediastack_cli", "components")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
