"""Run a CrossGuard policy pack the way `pulumi preview --policy-pack DIR` does: over its gRPC protocol.

The pack is started as its own process from its entry point (`python -u __main__.py` in the pack's
directory, as the Pulumi CLI starts a Python analyzer plugin); it announces its port on stdout. We
then speak pulumirpc.Analyzer to it: GetAnalyzerInfo, Configure (the pack's initial config, the
schema defaults and `--policy-config`, as the CLI reconciles them), Analyze for each resource and
AnalyzeStack for the whole stack. Secret values travel as Pulumi secrets (the signature object).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

from .offline import SECRET_MASK, SECRET_SIG, SECRET_VALUE, Registration

LEVELS = {"advisory": 0, "mandatory": 1, "disabled": 2, "remediate": 3}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
START_TIMEOUT_S = 60
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 400 * 1024 * 1024),
    ("grpc.max_send_message_length", 400 * 1024 * 1024),
]


class PolicyPackError(Exception):
    """The pack could not be started, configured or run; the message says why."""


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str  # advisory | mandatory | remediate
    resource: str  # resource name, or "stack"
    urn: str
    message: str
    description: str = ""


@dataclass
class PolicyReport:
    pack: str
    version: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    remediations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "mandatory"]

    def to_json(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "version": self.version,
            "mandatory": len(self.mandatory),
            "advisory": len([d for d in self.diagnostics if d.level == "advisory"]),
            "diagnostics": [asdict(d) for d in self.diagnostics],
            "remediations": self.remediations,
        }


def _secretize(value: Any) -> Any:
    """Masked secrets back into Pulumi's wire form, so the pack sees secrets where the engine would."""
    if value == SECRET_MASK:
        return {SECRET_SIG: SECRET_VALUE, "value": SECRET_MASK}
    if isinstance(value, dict):
        return {k: _secretize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secretize(v) for v in value]
    return value


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_secretize(dict(value)))
    return s


def read_policy_config(path: Path | None) -> dict[str, Any]:
    """A `--policy-pack-config` file: {"all": level, "<policy>": level | {"enforcementLevel": ..., ...}}."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise PolicyPackError(f"cannot read policy config {path}: {error}") from None
    if not isinstance(data, dict):
        raise PolicyPackError(f"policy config {path} must be a mapping of policy name to level or settings")
    return data


JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
}


def _check_type(policy: str, key: str, value: Any, schema: Mapping[str, Any]) -> None:
    expected = schema.get("type")
    if expected == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)  # protobuf Structs carry every number as a double
    python = JSON_TYPES.get(str(expected))
    if python and (not isinstance(value, python) or (expected in ("integer", "number") and isinstance(value, bool))):
        raise PolicyPackError(f"policy config {policy}.{key} = {value!r}: expected {expected}")
    for bound, ok in (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b)):
        if bound in schema and isinstance(value, (int, float)) and not ok(value, schema[bound]):
            raise PolicyPackError(f"policy config {policy}.{key} = {value!r}: {bound} is {schema[bound]}")


def reconcile_config(info: analyzer_pb2.AnalyzerInfo, user: Mapping[str, Any]) -> dict[str, analyzer_pb2.PolicyConfig]:
    """What the CLI sends in Configure: per policy, its level and its properties (defaults filled in)."""
    names = {p.name for p in info.policies}
    unknown = sorted(set(user) - names - {"all"})
    if unknown:
        raise PolicyPackError(
            f"policy config names unknown policies: {', '.join(unknown)}; the pack has: {', '.join(sorted(names))}"
        )
    initial = {k: json_format.MessageToDict(v, preserving_proto_field_name=True) for k, v in info.initialConfig.items()}
    all_level = user.get("all")
    result = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}
        properties = {k: v["default"] for k, v in schema.items() if isinstance(v, dict) and "default" in v}
        level = LEVEL_NAMES.get(policy.enforcementLevel, "advisory")
        for layer in (initial.get(policy.name), all_level, user.get(policy.name)):
            if isinstance(layer, str):
                level = layer
            elif isinstance(layer, dict):
                layer = dict(layer)
                level = str(layer.pop("enforcementLevel", level))
                layer.pop("properties", None)
                properties.update(layer)
        if level not in LEVELS:
            raise PolicyPackError(f"policy config {policy.name}: level {level!r}; use one of {', '.join(LEVELS)}")
        for key, value in properties.items():
            if key not in schema:
                raise PolicyPackError(
                    f"policy config {policy.name}.{key}: not a setting of this policy; "
                    f"settings: {', '.join(schema) or 'none'}"
                )
            _check_type(policy.name, key, value, schema[key])
        config = analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS[level])  # type: ignore[arg-type]
        config.properties.update(properties)
        result[policy.name] = config
    return result


class PolicyPack:
    """A running policy pack process and a gRPC client for it. Use as a context manager."""

    def __init__(self, pack_dir: Path, python: str | None = None, project: str = "mediastack", stack: str = "dev"):
        self.pack_dir = pack_dir.resolve()
        self.python = python or sys.executable
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.stub: analyzer_pb2_grpc.AnalyzerStub | None = None
        self.info: analyzer_pb2.AnalyzerInfo | None = None
        self.remediating = False
        self.project, self.stack = project, stack

    def __enter__(self) -> PolicyPack:
        if not (self.pack_dir / "PulumiPolicy.yaml").exists():
            raise PolicyPackError(f"{self.pack_dir} is not a policy pack (no PulumiPolicy.yaml)")
        # As the Pulumi CLI's Python host starts an analyzer: `python -u -m pulumi.policy <engine> <pack>` in the
        # pack's directory, with the stack's identity in the environment. The pack needs no engine to log to.
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PULUMI_PROJECT": self.project,
            "PULUMI_STACK": self.stack,
            "PULUMI_DRY_RUN": "true",
            "PULUMI_CONFIG": "{}",
        }
        self.process = subprocess.Popen(
            [self.python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(self.pack_dir)],
            start_new_session=True,
            cwd=self.pack_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        port = self._read_port()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT_S)
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        self.stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(stack=self.stack, project=self.project, dry_run=True)
        )
        self.info = self.stub.GetAnalyzerInfo(empty_pb2.Empty())
        return self

    def _read_port(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT_S)
        text = line[0].decode().strip() if line else ""
        if not text.isdigit():
            self.__exit__(None, None, None)
            stderr = self.process.stderr.read().decode() if self.process.stderr else ""
            raise PolicyPackError(f"policy pack {self.pack_dir} did not start: {stderr.strip()[-2000:] or 'no port'}")
        return int(text)

    def __exit__(self, *exc: object) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # as the CLI stops a plugin: the pack stops its server
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr) if self.process else ():
            if stream:
                stream.close()

    @property
    def version(self) -> str:
        """PulumiPolicy.yaml's version wins over the SDK's placeholder, as in the CLI."""
        meta = yaml.safe_load((self.pack_dir / "PulumiPolicy.yaml").read_text()) or {}
        return str(meta.get("version") or (self.info.version if self.info else ""))

    def plugin_version(self) -> str:
        assert self.stub is not None
        reply: plugin_pb2.PluginInfo = self.stub.GetPluginInfo(empty_pb2.Empty())
        return reply.version

    def configure(self, user_config: Mapping[str, Any]) -> None:
        assert self.stub is not None and self.info is not None
        config = reconcile_config(self.info, user_config)
        self.remediating = any(c.enforcementLevel == LEVELS["remediate"] for c in config.values())
        self.stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=config))

    def _options(self, r: Registration) -> analyzer_pb2.AnalyzerResourceOptions:
        return analyzer_pb2.AnalyzerResourceOptions(parent=r.parent or "")

    def analyze(self, r: Registration) -> analyzer_pb2.AnalyzeResponse:
        assert self.stub is not None
        return self.stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=self._options(r)
            )
        )

    def analyze_stack(self, resources: Iterable[Registration]) -> analyzer_pb2.AnalyzeResponse:
        assert self.stub is not None
        return self.stub.AnalyzeStack(
            analyzer_pb2.AnalyzeStackRequest(
                resources=[
                    analyzer_pb2.AnalyzerResource(
                        type=r.type,
                        properties=_struct(r.inputs),
                        urn=r.urn,
                        name=r.name,
                        options=self._options(r),
                        parent=r.parent or "",
                        dependencies=list(r.dependencies),
                        propertyDependencies={
                            key: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(urns))
                            for key, urns in r.property_dependencies.items()
                        },
                    )
                    for r in resources
                ]
            )
        )

    def remediate(self, r: Registration) -> analyzer_pb2.RemediateResponse:
        assert self.stub is not None
        return self.stub.Remediate(
            analyzer_pb2.AnalyzeRequest(
                type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=self._options(r)
            )
        )


def _diagnostics(response: analyzer_pb2.AnalyzeResponse, names: Mapping[str, str]) -> list[Diagnostic]:
    return [
        Diagnostic(
            policy=d.policyName,
            level=LEVEL_NAMES.get(d.enforcementLevel, "advisory"),
            resource=names.get(d.urn, "stack" if not d.urn else d.urn),
            urn=d.urn,
            message=d.message,
            description=d.description,
        )
        for d in response.diagnostics
    ]


def run_pack(
    pack_dir: Path,
    resources: list[Registration],
    user_config: Mapping[str, Any] | None = None,
    python: str | None = None,
    project: str = "mediastack",
    stack: str = "dev",
) -> PolicyReport:
    """Start the pack, configure it, analyze every resource and the stack; return what it said.

    As in the CLI, Remediate runs first for each resource and its result replaces the resource's inputs
    for Analyze; the report lists what was remediated.
    """
    custom = [r for r in resources if r.custom]
    names = {r.urn: r.name for r in resources}
    with PolicyPack(pack_dir, python, project, stack) as pack:
        assert pack.info is not None
        pack.configure(user_config or {})
        report = PolicyReport(pack=pack.info.name, version=pack.version)
        for i, r in enumerate(custom):
            for remediation in pack.remediate(r).remediations if pack.remediating else ():
                if remediation.diagnostic:
                    continue
                r = replace(r, inputs=json_format.MessageToDict(remediation.properties))
                custom[i] = r
                report.remediations.append(
                    {"policy": remediation.policyName, "resource": r.name, "description": remediation.description}
                )
            # A resource's diagnostics are about that resource, whether or not they carry its URN.
            report.diagnostics += [
                Diagnostic(d.policy, d.level, r.name, d.urn or r.urn, d.message, d.description)
                for d in _diagnostics(pack.analyze(r), names)
            ]
        report.diagnostics += _diagnostics(pack.analyze_stack(custom), names)
    return report
