"""The `mediastack` command: plan and render a stack offline, without the Pulumi CLI or Docker."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from .analyzer import PolicyPackError, PolicyReport, read_policy_config, run_pack
from .offline import PlanResult, ProjectError, Registration, read_stack, run_program

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_POLICY, EXIT_CONFIG = 0, 1, 2

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="Stack name: reads Pulumi.<stack>.yaml.")]
ProjectOpt = Annotated[Path, typer.Option("--project", help="Directory with Pulumi.yaml.")]


def _load(project: Path, stack: str):
    """Stack files and the validated config, or exit 2 with the config problems."""
    from mediastack.plan.loading import ConfigError, decode, parse_stack_config

    try:
        files = read_stack(project, stack)
    except ProjectError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_CONFIG) from None
    prefix = files.project + ":"
    raw = {k[len(prefix) :]: decode(v) for k, v in files.config.items() if k.startswith(prefix)}
    try:
        config = parse_stack_config(raw, stack, files.secret_keys)
    except ConfigError as error:
        err.print(f"[red]error:[/red] {error}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    return files, config


def _summary(r: Registration) -> str:
    i = r.inputs
    short = r.type.split(":")[-1]
    if short == "Container":
        nets = ",".join(n["name"].removeprefix("mediastack-") for n in i.get("networksAdvanced", []))
        parts = [
            i.get("image", "").split("@")[0],
            f"cpus={i.get('cpus')}",
            f"mem={i.get('memory')}MiB",
            f"reserve={i.get('memoryReservation')}MiB",
            f"nets={nets}",
        ]
        if "memorySwap" in i:
            parts.append(f"swap={i['memorySwap']}MiB")
        if i.get("ports"):
            parts.append("ports=" + ",".join(str(p["external"]) for p in i["ports"]))
        if i.get("devices"):
            parts.append("devices=" + ",".join(d["hostPath"] for d in i["devices"]))
        if i.get("deviceRequests"):
            parts.append("gpu=nvidia")
        health = i.get("healthcheck", {}).get("tests")
        parts.append("health=" + (" ".join(health[1:3]) if health else "none"))
        if i.get("envs") == "[secret]" or "[secret]" in str(i.get("envs")):
            parts.append("env=[secret]")
        return " ".join(str(p) for p in parts)
    if short == "RemoteImage":
        return str(i.get("name"))
    if short == "Network":
        return f"{i.get('name')} internal={str(i.get('internal', False)).lower()}"
    if short == "Command":
        return "create+delete" if i.get("delete") else "create"
    if short == "RandomPassword":
        return f"length={i.get('length')} (secret)"
    if short == "RandomId":
        return f"{i.get('byteLength')} random bytes, hex (secret)"
    if short == "Provider":
        return str(i.get("host", ""))
    if r.type == "pulumi-python:dynamic:Resource" and "kind" in i:  # a pipeline wiring
        body = i["body"] if isinstance(i.get("body"), dict) else {}
        what = body.get("path") or body.get("name") or i.get("name") or i.get("target") or ""
        return f"{i['kind']} {what} in {i.get('app')} via {i.get('url')}"
    return ""


def print_plan(result: PlanResult) -> None:
    by_parent: dict[str, list[Registration]] = {}
    for r in result.resources:
        by_parent.setdefault(r.parent, []).append(r)
    roots = [r for r in result.resources if not any(r.parent == o.urn for o in result.resources)]
    tree = Tree(f"[bold]stack {result.stack}[/bold] ({result.project})")

    def add(node: Tree, r: Registration) -> None:
        label = f"[cyan]{r.type}[/cyan] [bold]{r.name}[/bold]"
        summary = escape(_summary(r))
        branch = node.add(f"{label}  {summary}" if summary else label)
        for c in by_parent.get(r.urn, []):
            add(branch, c)

    for r in roots:
        add(tree, r)
    out.print(tree)
    table = Table(title="resources by type")
    table.add_column("type")
    table.add_column("count", justify="right")
    counts = Counter(r.type for r in result.resources)
    for type_, n in sorted(counts.items()):
        table.add_row(type_, str(n))
    table.add_row("[bold]total[/bold]", f"[bold]{sum(counts.values())}[/bold]")
    out.print(table)


def print_policy(report: PolicyReport) -> None:
    if not report.diagnostics:
        out.print(f"policy pack {report.pack} {report.version}: no violations")
        return
    table = Table(title=f"policy pack {report.pack} {report.version}")
    for column in ("level", "policy", "resource", "message"):
        table.add_column(column, overflow="fold")
    for d in sorted(report.diagnostics, key=lambda d: (d.level != "mandatory", d.policy, d.resource)):
        message = d.message.removeprefix(d.description).strip()
        color = "red" if d.level == "mandatory" else "yellow"
        table.add_row(f"[{color}]{d.level}[/{color}]", d.policy, escape(d.resource), escape(message))
    out.print(table)
    out.print(f"{len(report.mandatory)} mandatory, {len(report.diagnostics) - len(report.mandatory)} advisory")


def _read_earlier(path: Path) -> dict[str, Any]:
    from .upgrades import PlanFileError, read_plan

    try:
        return read_plan(path)
    except PlanFileError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None


def print_image_changes(earlier: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    from .upgrades import image_changes

    changes = image_changes(earlier, current)
    if not changes:
        out.print(f"images: none changed against {path}", soft_wrap=True)
        return
    table = Table(title=f"images changed against {path}")
    for column in ("resource", "change", "before", "after"):
        table.add_column(column, overflow="fold")
    for c in changes:
        table.add_row(c.resource, c.kind, c.old or "-", c.new or "-")
    out.print(table)
    out.print(f"{len(changes)} image(s) changed", soft_wrap=True)


@app.command()
def plan(
    stack: StackOpt,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the plan as JSON here.")] = None,
    project: ProjectOpt = Path("."),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the counts.")] = False,
    policy_pack: Annotated[
        Path | None, typer.Option("--policy-pack", help="Policy pack directory (default: <project>/policies).")
    ] = None,
    policy_config: Annotated[
        Path | None, typer.Option("--policy-config", help="Pack config, as `pulumi preview --policy-pack-config`.")
    ] = None,
    no_policy: Annotated[bool, typer.Option("--no-policy", help="Do not run the policy pack.")] = False,
    against: Annotated[
        Path | None, typer.Option("--against", help="An earlier `--json` plan: list the images that changed since.")
    ] = None,
) -> None:
    """Show every resource the stack would deploy, and run the policy pack over it as `pulumi preview` would."""
    files, _ = _load(project, stack)
    earlier = _read_earlier(against) if against is not None else None
    result = run_program(files)
    if quiet:
        out.print(f"stack {stack}: {len(result.resources)} resources")
    else:
        print_plan(result)
    report = None
    pack_dir = policy_pack or project / "policies"
    if not no_policy and (policy_pack is not None or (pack_dir / "PulumiPolicy.yaml").exists()):
        try:
            report = run_pack(
                pack_dir, result.resources, read_policy_config(policy_config), project=files.project, stack=stack
            )
        except PolicyPackError as error:
            err.print(f"[red]error:[/red] {escape(str(error))}")
            raise typer.Exit(EXIT_CONFIG) from None
        print_policy(report)
    if earlier is not None and against is not None:
        print_image_changes(earlier, result.to_json(), against)
    if json_path is not None:
        doc = result.to_json()
        if report is not None:
            doc["policy"] = report.to_json()
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        out.print(f"plan written to {json_path}")
    if report is not None and report.mandatory:
        raise typer.Exit(EXIT_POLICY)


def _host_files(stack: Any, host: Any, backed_up: Any, swarm: bool = False) -> dict[str, str]:
    """One host's scripts: its directories, the clients' first-start files, tuning, and its backups."""
    from mediastack.generate.seeds import SecretPlaceholders, seed_files, seed_script
    from mediastack.host.backup import backup_scripts
    from mediastack.host.directories import create_script, delete_script
    from mediastack.host.tuning import tuning_scripts

    config = stack.config
    files = {"storage-create.sh": create_script(stack), "storage-delete.sh": delete_script(stack)}
    seeds = seed_files(config, stack.enabled, SecretPlaceholders())  # generated secrets stay out of files
    if seeds:
        files["seeds-create.sh"] = seed_script(seeds, config.identity.puid, config.identity.pgid)
    if swarm:
        from mediastack.swarm.service import gpu_daemon_settings

        files.update(tuning_scripts(host, gpu_daemon_settings(host) or None))
    else:
        files.update(tuning_scripts(host))
    if backed_up is not None:
        files.update(backup_scripts(backed_up, swarm=swarm))
    return {f"hosts/{host.name}/{name}": content for name, content in files.items()}


def rendered_files(stack_name: str, config: Any) -> dict[str, str]:
    """Every file the program generates for another program, by path relative to the output dir."""
    from mediastack.generate.files import generate_files
    from mediastack.host.qos import qos_scripts
    from mediastack.host.vpn_guard import guard_scripts
    from mediastack.plan.resolve import resolve

    stack = resolve(config, stack_name)
    files = dict(generate_files(stack))
    if config.cluster:
        from mediastack.host.shared_storage import storage_scripts
        from mediastack.host.swarm_bootstrap import bootstrap_scripts
        from mediastack.plan.placement import placement
        from mediastack.swarm.stack import backup_view, on_host

        # What each node runs: its own directories, first-start files, tuning and backups.
        placements = {s.name: placement(s.spec, config) for s in stack.services}
        for node in config.hosts:
            view = backup_view(stack, placements, node.name)
            files.update(_host_files(on_host(stack, placements, node.name), node, view, swarm=True))
        files.update({f"swarm/{k}": v for k, v in bootstrap_scripts(config).items()})
        files.update({f"shared-storage/{k}": v for k, v in storage_scripts(config).items()})
        return files
    files.update(_host_files(stack, config.host, stack))
    files.update(
        {f"hosts/{config.host.name}/{k}": v for k, v in {**qos_scripts(config), **guard_scripts(config)}.items()}
    )
    return files


@app.command()
def render(
    stack: StackOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the generated files to.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Write every generated file (configs, scripts) for a stack to a directory, for review and checks."""
    _, config = _load(project, stack)
    files = rendered_files(stack, config)
    for rel, content in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        if rel.endswith(".sh"):
            path.chmod(0o755)
        out.print(f"wrote {path}")
    out.print(f"{len(files)} files for stack {stack}")


@app.command()
def graph(
    stack: StackOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Picture to write: a .svg or .png file.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Draw the stack's topology (hosts, networks, services, exposure, VPN, socket readers, storage) from its plan."""
    from mediastack.plan.resolve import resolve

    from .graph import GraphError, build
    from .graph import render as render_graph

    files, config = _load(project, stack)
    result = run_program(files)
    try:
        written = render_graph(build(result, resolve(config, stack)), out_file)
    except GraphError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(EXIT_CONFIG) from None
    out.print(f"wrote {written} ({written.stat().st_size} bytes)", soft_wrap=True)


@app.command()
def backups(stack: StackOpt, project: ProjectOpt = Path(".")) -> None:
    """Show what the stack's backups cover and how (derived from the catalog), with the schedule and retention."""
    from mediastack.host.backup import backup_plan, coverage, too_old_after
    from mediastack.model.calendar import format_duration
    from mediastack.plan.resolve import resolve

    _, config = _load(project, stack)
    resolved = resolve(config, stack)
    table = Table(title=f"backups of stack {stack}")
    for column in ("service", "state", "how", "paths", "left out"):
        table.add_column(column, overflow="fold")
    for c in coverage(resolved):
        table.add_row(c.service, c.kind, c.method, " ".join((*c.files, *c.in_place)), c.note)
    out.print(table)
    plan_ = backup_plan(resolved)
    if plan_ is None:
        err.print("no backups.repository: nothing is backed up, and the policy pack refuses the plan")
        raise typer.Exit(EXIT_POLICY)
    out.print(f"repository: {plan_.repository}")
    out.print(f"schedule: {plan_.schedule} (BackupTooOld after {format_duration(too_old_after(config))})")
    out.print(f"retention: {' '.join(plan_.keep)}; check: {plan_.check_schedule}")
    out.print(f"SQLite copies: {plan_.sqlite_copy}")


@app.command()
def verify(
    stack: StackOpt,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Where Jellyfin answers (default https://jellyfin.<domain>).")
    ] = None,
    requests: Annotated[int, typer.Option(min=1, max=100_000, help="Requests per endpoint.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 8,
    duration: Annotated[float, typer.Option(min=1, max=3600, help="Stop after this many seconds.")] = 60.0,
    warmup: Annotated[int, typer.Option(min=0, max=1000, help="Unmeasured requests per endpoint first.")] = 5,
    insecure: Annotated[bool, typer.Option("--insecure", help="Accept a self-signed certificate.")] = False,
    transcode_item: Annotated[
        str | None,
        typer.Option("--transcode-item", help="Jellyfin item id of the video to transcode (default: first)."),
    ] = None,
    transcode_runs: Annotated[
        int, typer.Option(min=0, max=20, help="Transcode starts to time (0: do not measure).")
    ] = 3,
    project: ProjectOpt = Path("."),
) -> None:
    """Load-test the running stack (bounded, async) and check it against the stack's SLOs; exit 1 on a miss."""
    import asyncio

    from .verify import run, transcode_start

    _, config = _load(project, stack)
    url = base_url or f"https://jellyfin.{config.domain}"
    results = asyncio.run(
        run(
            url,
            config,
            requests=requests,
            concurrency=concurrency,
            duration_s=duration,
            warmup=warmup,
            verify_tls=not insecure,
        )
    )
    table = Table(title=f"verify {stack} at {url} ({concurrency} in flight)")
    for column in ("endpoint", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "SLO p95", "result"):
        table.add_column(column, justify="left" if column in ("endpoint", "result") else "right")
    missed = []
    for r in results:
        ok = r.passed(config.slo.max_error_ratio)
        if not ok:
            missed.append(r.endpoint.name)
        table.add_row(
            r.endpoint.name,
            str(r.requests),
            str(r.errors),
            f"{r.quantile(0.5):.1f}",
            f"{r.quantile(0.95):.1f}",
            f"{r.quantile(0.99):.1f}",
            f"{r.rps:.1f}",
            f"{r.endpoint.target_ms:g}",
            "[green]ok[/green]" if ok else "[red]missed[/red]",
        )
    out.print(table)
    for r in results:
        if r.error_samples:
            out.print(f"{r.endpoint.name} errors, e.g.: {', '.join(r.error_samples)}")
    if not config.jellyfin_api_key:
        out.print("search not measured: set mediastack:jellyfin_api_key (a secret) to include it")
    if transcode_runs:
        started = asyncio.run(
            transcode_start(url, config, transcode_item, runs=transcode_runs, verify_tls=not insecure)
        )
        if not started.measured:
            out.print(f"transcode start not measured: {started.not_measured}", soft_wrap=True)
        else:
            ok = started.passed()
            times = ", ".join(f"{t:.0f}" for t in started.times_ms) or "-"
            verdict = "[green]ok[/green]" if ok else "[red]missed[/red]"
            out.print(
                f"transcode start of {escape(started.item or '?')}: {times} ms over {transcode_runs} runs, worst "
                f"{started.worst_ms:.0f} ms, SLO {started.target_ms:g} ms: {verdict}",
                soft_wrap=True,
            )
            for error in started.errors[:3]:
                out.print(f"transcode errors, e.g.: {escape(error)}", soft_wrap=True)
            if not ok:
                missed.append("transcode")
    if missed:
        err.print(f"SLO missed: {', '.join(missed)}")
        raise typer.Exit(EXIT_POLICY)


@app.command()
def preflight(
    stack: StackOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts and findings as JSON instead.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Read each target host before a first `up` and report what does not fit the stack (exit 1), or exit 2 when
    a host cannot be reached."""
    from .preflight import run_preflight

    _, config = _load(project, stack)
    raise typer.Exit(run_preflight(stack, config, as_json, out, err))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
