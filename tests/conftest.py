"""Shared fixtures: Pulumi's mock runtime (the one the offline plan uses) and the stack files."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediastack_cli.offline import PlanResult, Registration, StackFiles, read_stack, run_program, start_mocks

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = "docker:index/container:Container"


def require_tool(name: str) -> str:
    """Path of a program from Debian's packages; missing fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (.ci/run installs it)")
    pytest.skip(f"{name} is not installed")


def require_root(why: str) -> None:
    """Tests that change the kernel's state (network namespaces) need root: elsewhere they skip, under CI they fail."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI runs the tests as root (.ci/run)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def pack():
    """The policy pack, started as `pulumi preview --policy-pack` starts it, with its default config."""
    from mediastack_cli.analyzer import PolicyPack

    with PolicyPack(ROOT / "policies") as running:
        running.configure({})
        yield running


@pytest.fixture
def mocks():
    """Start Pulumi's mock runtime for component tests; returns the list registrations land in."""
    records: list[Registration] = []
    start_mocks("mediastack", "test", {}, frozenset(), records)
    return records


def stack_yaml(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def raw_config(stack: str) -> dict[str, Any]:
    """The `mediastack:` keys of a stack file, without the namespace, as plain data."""
    return {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in stack_yaml(stack)["config"].items()}


_plans: dict[str, PlanResult] = {}


def plan(stack: str) -> PlanResult:
    """The whole program under mocks for a stack of this repository (cached: plans are pure)."""
    if stack not in _plans:
        _plans[stack] = run_program(read_stack(ROOT, stack))
    return _plans[stack]


def plan_config(config: dict[str, Any], stack: str = "custom") -> PlanResult:
    cli_config = {f"mediastack:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}
    return run_program(StackFiles(ROOT, "mediastack", stack, cli_config, frozenset()))


def containers(result: PlanResult) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in result.resources if r.type == CONTAINER}


def container_labels(container: dict[str, Any]) -> dict[str, str]:
    return {label["label"]: label["value"] for label in container["labels"]}
