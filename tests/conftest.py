"""Shared fixtures: Pulumi's mock runtime (the one the offline plan uses) and the stack files."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediastack_cli.offline import PlanResult, Registration, StackFiles, read_stack, run_program, start_mocks

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = "docker:index/container:Container"


ENGINE_MODULE = re.compile(r"^(?P<module>.*/test_engine_[^/]*\.py)::[^\[]*(?P<params>\[.*\])?$")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduling with one change: an engine module's tests (per stack it deploys) are one unit of
    work, so a module-scoped deployment is made once, on one worker, not once per worker that draws one of its
    tests; every other test is a unit of its own, as with `--dist load`. (`--dist loadgroup` cannot say this:
    it loses its groups with pytest 9.2, pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EngineModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            engine = ENGINE_MODULE.match(nodeid)
            return f"{engine['module']}{engine['params'] or ''}" if engine else nodeid

    return EngineModules(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The engine tests first (in their order): they wait on health checks more than they compute, so the longest
    units start while the other worker runs the short ones."""
    items.sort(key=lambda item: not ENGINE_MODULE.match(item.nodeid))


def require_tool(name: str) -> str:
    """Path of a program from Debian's packages; missing fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (.ci/run installs it)")
    pytest.skip(f"{name} is not installed")


@pytest.fixture(scope="session")
def docker_engine(worker_id: str):
    """A Docker engine of the tests' own (tests/dockerd.py), one per session and xdist worker."""
    import dockerd

    reason = dockerd.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a Docker engine is required in CI (.ci/run installs docker.io): {reason}")
        pytest.skip(f"no Docker engine here: {reason}")
    worker = int(worker_id[2:]) if worker_id.startswith("gw") else 0
    try:
        engine = dockerd.start(worker=worker)
    except dockerd.EngineUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Docker engine did not start: {error}")
        pytest.skip(f"the Docker engine did not start: {error}")
    try:
        yield engine
    finally:
        dockerd.stop(engine)


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


SMTP_PASSWORD = "s3cret-smtp"


def with_smtp(stack: str = "prod", **alerting: Any) -> dict[str, Any]:
    """A stack's config with e-mail alerts through an SMTP relay that needs a password (and any other alerting keys)."""
    cfg = raw_config(stack)
    cfg["alerting"] = {
        **alerting,
        "email": {
            "to": "ops@example.org",
            "sender": "alerts@example.org",
            "smarthost": "smtp.example.org:587",
            "username": "alerts",
            "password": SMTP_PASSWORD,
        },
    }
    return cfg


_plans: dict[str, PlanResult] = {}


def plan(stack: str) -> PlanResult:
    """The whole program under mocks for a stack of this repository (cached: plans are pure)."""
    if stack not in _plans:
        _plans[stack] = run_program(read_stack(ROOT, stack))
    return _plans[stack]


def plan_config(config: dict[str, Any], stack: str = "custom") -> PlanResult:
    cli_config = {f"mediastack:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}
    return run_program(StackFiles(ROOT, "mediastack", stack, cli_config, frozenset()))


def dependencies_expanded(result: PlanResult, resource: Registration) -> set[str]:
    """Every URN the resource itself waits for, a dependency on a component expanded to its children (as the
    engine does). A parent's dependencies are not the child's."""
    children: dict[str, list[str]] = {}
    for r in result.resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)
    waits: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        urn = todo.pop()
        if urn not in waits:
            waits.add(urn)
            todo += children.get(urn, [])
    return waits


def containers(result: PlanResult) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in result.resources if r.type == CONTAINER}


def container_labels(container: dict[str, Any]) -> dict[str, str]:
    return {label["label"]: label["value"] for label in container["labels"]}


_HOST_FILE = r"""target="\$ROOT"('[^']*'|\S+)\n.*?<<'MEDIASTACK_FILE'\n(.*?)MEDIASTACK_FILE"""


def edit_host_files(script: str, change: Any, where: str = "/generated/traefik/") -> str:
    """A host step's files script with `change(text) -> text` applied to each file whose path contains `where`."""
    import base64
    import re
    import shlex

    def rewrite(match: re.Match[str]) -> str:
        path = shlex.split(match.group(1))[0]
        if where not in path:
            return match.group(0)
        text = change(base64.b64decode(match.group(2)).decode())
        start, end = match.span(2)
        whole = match.group(0)
        offset = match.start(0)
        return whole[: start - offset] + base64.encodebytes(text.encode()).decode() + whole[end - offset :]

    return re.sub(_HOST_FILE, rewrite, script, flags=re.DOTALL)


def host_written_files(result: PlanResult) -> dict[str, str]:
    """Host path -> content of every file a host step writes (mediastack/host/directories.py files_script: the quoted
    path, then the content in base64)."""
    import base64
    import re
    import shlex

    written = re.compile(_HOST_FILE, re.DOTALL)
    found = {}
    for r in result.resources:
        create = r.inputs.get("create") if r.type.startswith("command:") else None
        for quoted, encoded in written.findall(create if isinstance(create, str) else ""):
            found[shlex.split(quoted)[0]] = base64.b64decode(encoded).decode()
    return found


def traefik_dynamic(result: PlanResult) -> dict[str, Any]:
    """The routes Traefik's file provider reads, all its files merged: the directory the host step writes and
    Traefik binds from its host (one host or a Swarm), or a Swarm config."""
    import base64

    for r in result.resources:
        if r.type in (CONTAINER, "docker:index/service:Service") and r.inputs["name"] == "traefik":
            # A container's mounts, or a Swarm service's (Traefik binds the directory from its host there too).
            mounts = r.inputs.get("mounts") or r.inputs["taskSpec"]["containerSpec"]["mounts"]
            (source,) = [m["source"] for m in mounts if m["target"] == "/etc/traefik/dynamic"]
            docs = [
                yaml.safe_load(text)
                for path, text in sorted(host_written_files(result).items())
                if path.startswith(source + "/")
            ]
            assert docs, f"no file written into {source}"
            http: dict[str, dict[str, Any]] = {}
            for doc in docs:
                for section, entries in (doc.get("http") or {}).items():
                    http.setdefault(section, {}).update(entries)
            return {"http": http}
    for r in result.resources:
        if r.type == "docker:index/serviceConfig:ServiceConfig" and r.inputs["name"].startswith(
            "mediastack-traefik-dynamic-"
        ):
            return yaml.safe_load(base64.b64decode(r.inputs["data"]).decode())
    raise AssertionError("no Traefik dynamic config in the plan")


class ConsumerTagsLoader(yaml.SafeLoader):
    """Safe YAML plus the local tags the reading program resolves itself (Recyclarr's `!env_var NAME` and
    `!file PATH`), which load as their text."""


ConsumerTagsLoader.add_constructor("!env_var", lambda loader, node: loader.construct_scalar(node))
ConsumerTagsLoader.add_constructor("!file", lambda loader, node: loader.construct_scalar(node))


def load_generated_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConsumerTagsLoader)  # a SafeLoader: no Python objects


def refused_config(config: dict[str, Any], path: str, words: list[str], stack: str = "prod") -> str:
    """Parse a config that must be refused: the message names `path` on a line of its own that holds every one of
    `words` (the value and the fix). Returns the whole message for further checks."""
    from mediastack.plan.loading import ConfigError, parse_stack_config

    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config, stack)
    message = str(caught.value)
    lines = [line for line in message.splitlines()[1:] if line.startswith(f"  - {path} = ")]
    assert lines, f"no problem at {path} in:\n{message}"
    assert any(all(w in line for w in words) for line in lines), f"{words} not in:\n{message}"
    return message
