"""`mediastack preflight`: read each target host before a first `pulumi up` and report what does not fit.

Three parts: a transport per host (a fixed, read-only set of commands, run locally for localhost and over
ssh otherwise, and the Docker API at the endpoint the stack's provider uses), pure checks that turn the
facts read and the config into findings, and `preflight()` that ties them together for the command.
No config value is ever part of a shell string: commands are argv lists, quoted with shlex for ssh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mediastack.model.config import Host, StackConfig
from mediastack.model.units import MIB, format_size
from mediastack.plan.resolved import ResolvedStack

from .checks import check_host
from .facts import WEB_PORTS, EngineFacts, Finding, HostFacts
from .probe import Unreachable, commands_for, docker_client, docker_endpoint, read_engine, read_host

# -- the command's work ----------------------------------------------------------------------------------------


@dataclass
class HostReport:
    host: str
    docker: str
    commands: str
    engine: EngineFacts | None = None
    facts: HostFacts | None = None
    findings: list[Finding] = field(default_factory=list)
    unreachable: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "docker": self.docker,
            "commands": self.commands,
            "unreachable": self.unreachable,
            "engine": asdict(self.engine) if self.engine else None,
            "facts": (
                {
                    "render_gid": self.facts.render_gid,
                    "dri": list(self.facts.dri) if self.facts.dri is not None else None,
                    "filesystems": {k: asdict(v) for k, v in self.facts.filesystems.items()},
                    "listening": sorted(p for p in self.facts.listening if p in WEB_PORTS),
                }
                if self.facts
                else None
            ),
            "findings": [asdict(f) for f in self.findings],
        }


def preflight_host(stack: ResolvedStack, host: Host) -> HostReport:
    endpoint = docker_endpoint(host)
    commands = commands_for(host)
    report = HostReport(host.name, endpoint, commands.how)
    try:
        with docker_client(endpoint) as client:
            report.engine = read_engine(client)
        report.facts = read_host(commands, stack.config, host, report.engine.docker_root)
    except Unreachable as error:
        report.unreachable = str(error)
        return report
    report.findings = check_host(stack, host, report.engine, report.facts)
    return report


def preflight(stack: ResolvedStack) -> list[HostReport]:
    return [preflight_host(stack, host) for host in stack.config.hosts]


# -- output ------------------------------------------------------------------------------------------------------


def _engine_line(engine: EngineFacts) -> str:
    store = "containerd image store" if engine.containerd_store else f"storage driver {engine.storage_driver}"
    return (
        f"Docker {engine.version} (API {engine.api_version}, min {engine.min_api_version or '?'}), "
        f"cgroup v{engine.cgroup_version}, {store}, {engine.cpus} CPUs, {format_size(engine.memory // MIB * MIB)}, "
        f"runtimes {', '.join(engine.runtimes) or 'none'}"
    )


def print_reports(reports: list[HostReport], out: Any, err: Any) -> None:
    from rich.markup import escape

    for r in reports:
        if r.unreachable:
            err.print(f"[red]error:[/red] host {escape(r.host)}: cannot reach {escape(r.unreachable)}")
            continue
        assert r.engine is not None
        out.print(f"[bold]host {escape(r.host)}[/bold] via {escape(r.docker)}, commands {escape(r.commands)}")
        out.print(f"  {escape(_engine_line(r.engine))}", soft_wrap=True)
        if not r.findings:
            out.print("  [green]ok[/green]: nothing to fix")
        for f in r.findings:
            color = "red" if f.severity == "mismatch" else "yellow"
            out.print(
                f"  [{color}]{f.severity}[/{color}] {f.check}: {escape(f.message)}; fix: {escape(f.fix)}",
                soft_wrap=True,
            )
    mismatches = sum(1 for r in reports for f in r.findings if f.severity == "mismatch")
    unreachable = sum(1 for r in reports if r.unreachable)
    out.print(f"{mismatches} mismatch(es), {unreachable} host(s) unreachable, {len(reports)} host(s) read")


EXIT_CLEAN, EXIT_MISMATCH, EXIT_UNREACHABLE = 0, 1, 2


def exit_code(reports: list[HostReport]) -> int:
    if any(r.unreachable for r in reports):
        return EXIT_UNREACHABLE
    if any(f.severity == "mismatch" for r in reports for f in r.findings):
        return EXIT_MISMATCH
    return EXIT_CLEAN


def run_preflight(stack_name: str, config: StackConfig, as_json: bool, out: Any, err: Any) -> int:
    import json

    from mediastack.plan.resolve import resolve

    reports = preflight(resolve(config, stack_name))
    code = exit_code(reports)
    if as_json:
        doc = {"stack": stack_name, "exit": code, "hosts": [r.to_json() for r in reports]}
        print(json.dumps(doc, indent=2))
    else:
        print_reports(reports, out, err)
    return code
