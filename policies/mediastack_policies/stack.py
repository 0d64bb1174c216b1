"""Stack policies: the invariants between services that no per-container linter sees."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    StackValidationArgs,
    StackValidationPolicy,
)

from mediastack_vocabulary import (
    ARR_ROLES,
    BACKUP_COVERS_MARKER,
    DOWNLOAD_ROLES,
    Label,
    Role,
)

from .routes import every_service_monitored, public_routes_need_login, web_ui_routed
from .shapes import (
    LOCAL_COMMAND,
    REMOTE_COMMAND,
    UNKNOWN,
    Report,
    plain,
)
from .stack_args import classified, networks_of, stack_config, workloads_of

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY


def host_capacity(args: StackValidationArgs, report: Report) -> None:
    headroom = float(stack_config(args).get("headroom", 0.1))
    hosts: dict[str, dict[str, float]] = defaultdict(
        lambda: {"cpu": 0.0, "mem": 0.0, "cpus": 0.0, "memory": 0.0, "reserve": 0.0}
    )
    for w, _ in workloads_of(args):
        host = w.labels.get(Label.host)
        if not host:
            continue
        h = hosts[host]
        h["cpu"] += w.cpu_reservation or 0
        h["mem"] += w.memory_reservation or 0
    # Each host's capacities come once, from the environment of its host command (mediastack's sysctl step).
    for r in args.resources:
        env = plain(r.props.get("environment")) if r.resource_type in (LOCAL_COMMAND, REMOTE_COMMAND) else None
        if isinstance(env, dict) and env.get("MEDIASTACK_HOST") in hosts:
            h = hosts[str(env["MEDIASTACK_HOST"])]
            h["cpus"] = float(env.get("MEDIASTACK_HOST_CPUS", 0))
            h["memory"] = float(env.get("MEDIASTACK_HOST_MEMORY", 0))
            h["reserve"] = float(env.get("MEDIASTACK_HOST_RESERVE", 0))
    for host, h in sorted(hosts.items()):
        if not (h["cpus"] and h["memory"]):
            report(f"host {host}: its capacities are unknown (no host command carries MEDIASTACK_HOST_*)", None)
            continue
        mem_room = (h["memory"] - h["reserve"]) * (1 - headroom)
        if h["mem"] > mem_room:
            report(
                f"host {host}: memory reservations total {h['mem'] / 2**30:.1f} GiB, above the "
                f"{mem_room / 2**30:.1f} GiB left after the host reserve and {headroom:.0%} headroom",
                None,
            )
        cpu_room = h["cpus"] * (1 - headroom)
        if h["cpu"] > cpu_room:
            report(
                f"host {host}: CPU reservations total {h['cpu']:.2f}, above {cpu_room:.2f} "
                f"({h['cpus']:g} CPUs less {headroom:.0%} headroom)",
                None,
            )


def download_bandwidth(args: StackValidationArgs, report: Report) -> None:
    for w, _ in classified(args, report, "whether it is a download client that needs a bandwidth limit"):
        if w.role in DOWNLOAD_ROLES and not (w.labels.get(Label.bandwidth_down) and w.labels.get(Label.bandwidth_up)):
            report(
                f"{w.service}: download client without a bandwidth limit (down and up); set "
                "mediastack:downloads.max_down and max_up, or a host link to shape it there",
                None,
            )


def unique_host_ports(args: StackValidationArgs, report: Report) -> None:
    owners: dict[tuple[str, int], list[str]] = defaultdict(list)
    for w, _ in workloads_of(args):
        for port in w.published_ports:
            owners[(w.labels.get(Label.host, "?"), port)].append(w.service)
    for (host, port), services in sorted(owners.items()):
        if len(services) > 1:
            report(f"host {host}: port {port} is published by {', '.join(sorted(services))}", None)


SPLIT_MOUNTS = ("/downloads", "/movies", "/tv", "/music", "/books", "/completed", "/incomplete")


def hardlinks_work(args: StackValidationArgs, report: Report) -> None:
    roots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w, _ in classified(args, report, "whether it shares the one data root"):
        if w.role not in ARR_ROLES + DOWNLOAD_ROLES or w.labels.get(Label.writes_data) != "true":
            continue
        data = [m for m in w.mounts if m.target == "/data"]
        split = [m.target for m in w.mounts if m.target in SPLIT_MOUNTS]
        if split:
            report(
                f"{w.service}: separate {', '.join(split)} mounts make imports copies, not hardlinks; mount "
                "the one data root at /data",
                None,
            )
        if not data:
            report(f"{w.service}: does not mount the data root at /data", None)
            continue
        roots[(data[0].source, data[0].target)].append(w.service)
    if len(roots) > 1:
        detail = "; ".join(f"{src} -> {dst}: {', '.join(sorted(s))}" for (src, dst), s in sorted(roots.items()))
        report(f"*arr apps and download clients mount different data roots, so hardlinks fail: {detail}", None)


def one_identity(args: StackValidationArgs, report: Report) -> None:
    seen: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for w, _ in classified(args, report, "whether it writes the data root as the one identity"):
        if w.labels.get(Label.writes_data) != "true":
            continue
        identity = w.labels.get(Label.identity)
        if identity is None and not w.env_is_secret:
            identity = ":".join(str(w.env.get(k, "?")) for k in ("PUID", "PGID", "UMASK"))
        if identity is None:
            continue
        puid, pgid, umask = [*identity.split(":"), "?", "?", "?"][:3]
        seen[(puid, pgid, umask)].append(w.service)
    if len(seen) > 1:
        detail = "; ".join(
            f"PUID={a} PGID={b} UMASK={c}: {', '.join(sorted(s))}" for (a, b, c), s in sorted(seen.items())
        )
        report(f"containers that write the data root run as different identities: {detail}", None)


def render_group(args: StackValidationArgs, report: Report) -> None:
    for w, _ in workloads_of(args):
        if any(d.startswith("/dev/dri") for d in w.devices) and not w.group_adds:
            report(f"{w.service}: has /dev/dri without the host's render group (group_adds)", None)


def data_services_internal(args: StackValidationArgs, report: Report) -> None:
    nets = networks_of(args)
    allowed = set(stack_config(args).get("egress_services", ["alertmanager"]))
    for w, _ in classified(args, report, "whether it is a database kept off external networks"):
        if w.role not in (Role.database, Role.monitoring) or w.service in allowed:
            continue
        external = [n for n in w.networks if not nets.get(n, False)]
        if external:
            report(f"{w.service}: a {w.role} container on non-internal network(s) {', '.join(external)}", None)


def _made_from(args: StackValidationArgs, prop: str) -> dict[str, set[str]]:
    """URN -> the URNs whose outputs made its input `prop` (the property dependencies `pulumi` sends)."""
    return {
        r.urn: {d.urn for d in (getattr(r, "property_dependencies", None) or {}).get(prop, [])} for r in args.resources
    }


def vpn_no_bypass(args: StackValidationArgs, report: Report) -> None:
    vpns = {urn: w for w, urn in workloads_of(args) if w.role == Role.vpn}
    if not vpns:
        return
    # A client names the VPN container by its name, or by its id, which is what Docker stores and the program passes
    # (`container:` + the VPN container's id): the id the VPN container shows (its outputs, after `up`), or a value
    # made from the VPN container's outputs (at preview or under mocks the only trace of that id; while the VPN
    # container is still to be created the whole value is unknown).
    names = {w.name for w in vpns.values()} | {
        str(w.raw["id"]) for w in vpns.values() if w.raw.get("id") not in (None, "", UNKNOWN)
    }
    made_from = _made_from(args, "networkMode")
    for w, urn in classified(args, report, "whether it must reach the network only through the VPN"):
        if w.role not in DOWNLOAD_ROLES:
            continue
        mode = w.network_mode or ""
        shared = mode.startswith("container:") or mode == UNKNOWN
        through = shared and (mode.split(":", 1)[-1] in names or bool(made_from.get(urn, set()) & vpns.keys()))
        if not through or w.networks:
            report(
                f"{w.service}: has a network path that bypasses the VPN (network_mode {mode or 'bridge'}, "
                f"networks {', '.join(w.networks) or 'none'}); share the VPN container's namespace only",
                None,
            )


BACKUP_MARKER = BACKUP_COVERS_MARKER


def _backup_coverage(args: StackValidationArgs) -> tuple[bool, set[str], set[str]]:
    """(a backup is deployed, services it covers, services the stack config deliberately leaves out), from the
    marker the backup command carries on its triggers."""
    found, covered, excluded = False, set[str](), set[str]()
    for r in args.resources:
        if r.resource_type not in (LOCAL_COMMAND, REMOTE_COMMAND):
            continue
        for trigger in plain(r.props.get("triggers")) or []:
            if isinstance(trigger, str) and trigger.startswith(BACKUP_MARKER):
                found = True
                names, _, rest = trigger[len(BACKUP_MARKER) :].partition(";excluded=")
                covered.update(n for n in names.split(",") if n)
                excluded.update(n for n in rest.split(",") if n)
    return found, covered, excluded


def stateful_backed_up(args: StackValidationArgs, report: Report) -> None:
    found, covered, excluded = _backup_coverage(args)
    allowed = set(stack_config(args).get("allow_uncovered", [])) | excluded
    missing = sorted(
        (w.service, w.labels[Label.state])
        for w, _ in classified(args, report, "whether it keeps state the backups must cover")
        if w.labels.get(Label.state) and w.service not in covered and w.service not in allowed
    )
    if not missing:
        return
    if not found:
        names = ", ".join(f"{s} ({kind})" for s, kind in missing)
        report(
            f"no backups in this stack: {len(missing)} services keep state that nothing backs up: {names}; "
            "set mediastack:backups.repository (docs/backups.md)",
            None,
        )
        return
    for service, kind in missing:
        report(f"{service}: keeps {kind} state that the backups do not cover", None)


def _policy(
    name: str, description: str, validate, level=MANDATORY, schema: dict[str, Any] | None = None
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=PolicyConfigSchema(properties=schema) if schema else None,
    )


STACK_POLICIES = [
    _policy(
        "host-capacity",
        "Per host, reservations fit its CPUs and memory with headroom.",
        host_capacity,
        schema={"headroom": {"type": "number", "default": 0.1, "minimum": 0, "maximum": 0.9}},
    ),
    _policy(
        "every-service-monitored",
        "Every workload is a Prometheus scrape target or blackbox probe.",
        every_service_monitored,
        level=ADVISORY,
    ),
    _policy(
        "web-ui-routed",
        "Every web UI is routed through the reverse proxy, not published.",
        web_ui_routed,
        schema={"proxy_services": {"type": "array", "items": {"type": "string"}, "default": ["traefik"]}},
    ),
    _policy(
        "public-route-needs-login",
        "A route the internet reaches (no IP allow-list) leads only to a service with a login of its own.",
        public_routes_need_login,
        schema={"proxy_services": {"type": "array", "items": {"type": "string"}, "default": ["traefik"]}},
    ),
    _policy("download-bandwidth-limit", "Download clients have a bandwidth limit.", download_bandwidth, level=ADVISORY),
    _policy("unique-host-ports", "No two workloads publish the same host port.", unique_host_ports),
    _policy("hardlinks-work", "*arr apps and download clients mount one data root at /data.", hardlinks_work),
    _policy("one-identity", "One PUID/PGID/UMASK for every container that writes the data root.", one_identity),
    _policy("render-group", "A container given /dev/dri also gets the render group.", render_group),
    _policy(
        "data-services-internal",
        "Database and monitoring containers sit on internal networks only.",
        data_services_internal,
        schema={"egress_services": {"type": "array", "items": {"type": "string"}, "default": ["alertmanager"]}},
    ),
    _policy("vpn-no-bypass", "With a VPN, download clients share its namespace and nothing else.", vpn_no_bypass),
    _policy(
        "stateful-services-backed-up",
        "Every workload with state (label mediastack.state) is covered by the stack's backups.",
        stateful_backed_up,
        schema={"allow_uncovered": {"type": "array", "items": {"type": "string"}, "default": []}},
    ),
]
