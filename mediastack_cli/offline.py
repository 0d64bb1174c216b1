"""Run the Pulumi program without the Pulumi CLI or a Docker engine: Pulumi's own mock runtime.

The stack config is read from Pulumi.yaml and Pulumi.<stack>.yaml the way the CLI reads it and
handed to the program the way the CLI hands it (JSON text per namespaced key, secret keys listed).
Every resource registration is recorded with its inputs as the provider would receive them;
secret values are masked in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import Mocks

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_MASK = "[secret]"
OFFLINE_SECRET = "offline-plan-cannot-decrypt"


class ProjectError(Exception):
    """The project or stack files are missing or not what Pulumi accepts."""


@dataclass(frozen=True)
class StackFiles:
    project_dir: Path
    project: str
    stack: str
    config: dict[str, str]  # namespaced key -> value as the CLI passes it (JSON text for structures)
    secret_keys: frozenset[str]


def _as_cli_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _contains_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def _strip_secure(value: Any) -> Any:
    """Offline we cannot decrypt `secure:` values; they become a placeholder and the key is secret."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return OFFLINE_SECRET
        return {k: _strip_secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secure(v) for v in value]
    return value


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ProjectError(f"{path.name} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path.name} must be a mapping at the top level")
    return data


def read_stack(project_dir: Path, stack: str) -> StackFiles:
    """Pulumi.yaml plus Pulumi.<stack>.yaml, merged and namespaced as `pulumi config` sees them."""
    project_file = project_dir / "Pulumi.yaml"
    if not project_file.exists():
        raise ProjectError(f"no Pulumi.yaml in {project_dir}; run from the project directory or pass --project")
    project = _load_yaml(project_file)
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError("Pulumi.yaml has no project `name`")
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise ProjectError(
            f"no stack '{stack}': {stack_file.name} does not exist; stacks here: {', '.join(stacks) or 'none'}"
        )

    def namespaced(key: str) -> str:
        return key if ":" in key else f"{name}:{key}"

    merged: dict[str, Any] = {}
    # Project-level config: `key: value` or `key: {default: ..., value: ...}` (the CLI's two forms).
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and ({"default", "value"} & set(spec)):
            if "value" in spec or "default" in spec:
                merged[namespaced(key)] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict) or "type" not in spec:
            merged[namespaced(key)] = spec
    stack_config = _load_yaml(stack_file).get("config") or {}
    if not isinstance(stack_config, dict):
        raise ProjectError(f"{stack_file.name}: `config` must be a mapping")
    for key, value in stack_config.items():
        merged[namespaced(str(key))] = value

    secret_keys = frozenset(k for k, v in merged.items() if _contains_secure(v))
    config = {k: _as_cli_value(_strip_secure(v)) for k, v in merged.items()}
    return StackFiles(project_dir, name, stack, config, secret_keys)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class StackMocks(Mocks):
    """Outputs a provider would compute, made deterministic so plans are reproducible."""

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        from pulumi.runtime import MockResourceArgs

        assert isinstance(args, MockResourceArgs)
        state = dict(args.inputs)
        seed = _digest(f"{args.typ}/{args.name}")
        if args.typ == "docker:index/remoteImage:RemoteImage":
            ref = state["name"]
            repo = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
            state["repoDigest"] = f"{repo}@sha256:{_digest(ref)}"
            state["imageId"] = f"sha256:{_digest('id' + ref)}"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = (seed * 4)[: int(state.get("length", 32))]
        elif args.typ == "random:index/randomId:RandomId":
            size = int(state.get("byteLength", 16))
            state["hex"] = seed[: size * 2]
            state["b64Url"] = seed[:size]
        elif args.typ.startswith("command:"):
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        return f"{args.name}-{seed[:8]}", state

    def call(self, args: Any) -> tuple[dict[str, Any], None]:
        return {}, None


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    provider: str = ""
    delete_before_replace: bool = False
    dependencies: tuple[str, ...] = ()  # URNs it waits for: explicit depends_on and the outputs it reads
    # Input -> the URNs whose outputs made it (what `pulumi` sends the pack as propertyDependencies).
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    id: str = ""  # the id the mocks gave it (`<name>-<8 hex>`), which other resources' inputs may quote


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return SECRET_MASK
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if value == UNKNOWN:
        return "[unknown]"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Structs carry every number as a double
    return value


def make_monitor(mocks: StackMocks, records: list[Registration]):
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
                records.append(
                    Registration(
                        urn=response.urn,
                        type=request.type,
                        name=request.name,
                        parent=request.parent,
                        custom=bool(request.custom),
                        inputs=_mask(raw),
                        provider=request.provider,
                        delete_before_replace=bool(request.deleteBeforeReplace),
                        dependencies=tuple(request.dependencies),
                        property_dependencies={
                            key: tuple(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
                        },
                        id=response.id,
                    )
                )
            return response

    return RecordingMonitor(mocks)


@dataclass
class PlanResult:
    stack: str
    project: str
    resources: list[Registration] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "resources": [
                {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent or None, "inputs": r.inputs}
                for r in self.resources
            ],
        }


@contextlib.contextmanager
def _in_project(project_dir: Path):
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(project_dir)
    sys.path.insert(0, str(project_dir))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def start_mocks(
    project: str,
    stack: str,
    config: dict[str, str],
    secret_keys: frozenset[str],
    records: list[Registration] | None = None,
) -> None:
    """Point the Pulumi runtime at the recording mock monitor with this stack's config."""
    import pulumi
    from pulumi.runtime import settings

    settings.ROOT.set(None)  # a fresh root Stack resource for this stack
    pulumi.runtime.set_all_config(dict(config), sorted(secret_keys))
    mocks = StackMocks()
    monitor = make_monitor(mocks, records if records is not None else [])
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)


def run_program(files: StackFiles, program: Path | None = None) -> PlanResult:
    """Run the project's __main__.py under the mocks; return every registration in order."""
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    result = PlanResult(stack=files.stack, project=files.project)
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # an earlier asyncio.run() in this thread closed and cleared it
        asyncio.set_event_loop(asyncio.new_event_loop())
    start_mocks(files.project, files.stack, files.config, files.secret_keys, result.resources)
    main = program or files.project_dir / "__main__.py"
    with _in_project(files.project_dir):

        def run_main() -> None:
            runpy.run_path(str(main), run_name="__main__")

        _sync_await(run_pulumi_func(run_main))
    return result
