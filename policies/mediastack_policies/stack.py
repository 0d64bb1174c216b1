"""Stack policies: the invariants between services that no per-container linter sees."""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    StackValidationArgs,
    StackValidationPolicy,
)

from .shapes import (
    LOCAL_COMMAND,
    NETWORK,
    REMOTE_COMMAND,
    SECRET,
    SERVICE_CONFIG,
    UNKNOWN,
    Report,
    Workload,
    plain,
    workload,
)

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
ARR_ROLES = ("arr",)
DOWNLOAD_ROLES = ("download_client",)


def _workloads(args: StackValidationArgs) -> list[tuple[Workload, str]]:
    found = []
    for r in args.resources:
        w = workload(r.resource_type, r.name, r.props)
        if w is not None:
            found.append((w, r.urn))
    return found


def _networks(args: StackValidationArgs) -> dict[str, bool]:
    """Docker network name -> internal."""
    return {
        str(r.props.get("name")): bool(r.props.get("internal"))
        for r in args.resources
        if r.resource_type == NETWORK and r.props.get("name")
    }


def _config(args: StackValidationArgs) -> dict[str, Any]:
    return dict(args.get_config() or {})


def host_capacity(args: StackValidationArgs, report: Report) -> None:
    headroom = float(_config(args).get("headroom", 0.1))
    hosts: dict[str, dict[str, float]] = defaultdict(
        lambda: {"cpu": 0.0, "mem": 0.0, "cpus": 0.0, "memory": 0.0, "reserve": 0.0}
    )
    for w, _ in _workloads(args):
        host = w.labels.get("mediastack.host")
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


def _prometheus_yml(args: StackValidationArgs, workloads: Iterable[Workload]) -> str | None:
    """The config Prometheus receives: uploaded into its container, or a Swarm config on a cluster."""
    for w in workloads:
        if w.service != "prometheus":
            continue
        for upload in w.raw.get("uploads") or []:
            if str(upload.get("file", "")).endswith("prometheus.yml") and upload.get("content") not in (None, SECRET):
                return str(upload["content"])
        for r in args.resources:
            if r.resource_type != SERVICE_CONFIG:
                continue
            props = plain(r.props)
            labels = {i.get("label"): i.get("value") for i in props.get("labels") or []}
            if labels.get("mediastack.file") == "prometheus/prometheus.yml":
                data = props.get("data")
                return base64.b64decode(str(data)).decode() if data not in (None, SECRET, UNKNOWN) else None
    return None


def _scrape_targets(args: StackValidationArgs, workloads: Iterable[Workload]) -> set[str] | None:
    """Hosts that Prometheus scrapes or probes (Swarm's tasks.<service> names count as the service)."""
    text = _prometheus_yml(args, workloads)
    if text is None:
        return None
    doc = yaml.safe_load(text) or {}
    hosts = set()
    for job in doc.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            for target in sc.get("targets") or []:
                hosts.add(re.sub(r"^https?://", "", str(target)).split(":")[0].split("/")[0])
        for sd in job.get("dns_sd_configs") or []:
            hosts.update(str(n).removeprefix("tasks.") for n in sd.get("names") or [])
    return hosts


def every_service_monitored(args: StackValidationArgs, report: Report) -> None:
    workloads = [w for w, _ in _workloads(args)]
    targets = _scrape_targets(args, workloads)
    if targets is None:
        if workloads:
            report("no Prometheus in this stack: no service is monitored (enable the monitoring bundle)", None)
        return
    # An exporter that is scraped watches what its `mediastack.watches` label names.
    watched = {
        name
        for w in workloads
        if w.name in targets or w.service in targets
        for name in w.labels.get("mediastack.watches", "").split(",")
        if name
    }
    for w in workloads:
        if w.name not in targets and w.service not in targets and w.service not in watched:
            report(f"{w.service}: neither scraped nor probed by Prometheus, nor watched by a scraped exporter", None)


def web_ui_routed(args: StackValidationArgs, report: Report) -> None:
    proxies = set(_config(args).get("proxy_services", ["traefik"]))
    workloads = [w for w, _ in _workloads(args)]
    by_name = {w.name: w for w in workloads}
    for w in workloads:
        port = w.labels.get("mediastack.web-port")
        if not port or w.service in proxies:
            continue
        shared = (w.network_mode or "").removeprefix("container:")
        carrier = by_name.get(shared) if w.network_mode and w.network_mode.startswith("container:") else None
        if carrier is not None:
            # In another container's network namespace (a VPN's) the proxy reaches the UI at that container, so
            # the route is on it: a router named for this service, sending to this port.
            routed = (
                carrier.labels.get("traefik.enable") == "true"
                and bool(carrier.labels.get(f"traefik.http.routers.{w.service}.rule"))
                and carrier.labels.get(f"traefik.http.routers.{w.service}.service", w.service) == w.service
                and carrier.labels.get(f"traefik.http.services.{w.service}.loadbalancer.server.port") == port
            )
        else:
            routed = w.labels.get("traefik.enable") == "true" and any(
                k.startswith("traefik.http.routers.") and k.endswith(".rule") for k in w.labels
            )
        if not routed:
            report(f"{w.service}: web UI on port {port} is not routed through the reverse proxy", None)
        if w.published_ports:
            report(f"{w.service}: web UI is published on the host, bypassing the reverse proxy", None)


def download_bandwidth(args: StackValidationArgs, report: Report) -> None:
    for w, _ in _workloads(args):
        if w.role in DOWNLOAD_ROLES and not (
            w.labels.get("mediastack.bandwidth-down") and w.labels.get("mediastack.bandwidth-up")
        ):
            report(
                f"{w.service}: download client without a bandwidth limit (down and up); set "
                "mediastack:downloads.max_down and max_up, or a host link to shape it there",
                None,
            )


def unique_host_ports(args: StackValidationArgs, report: Report) -> None:
    owners: dict[tuple[str, int], list[str]] = defaultdict(list)
    for w, _ in _workloads(args):
        for port in w.published_ports:
            owners[(w.labels.get("mediastack.host", "?"), port)].append(w.service)
    for (host, port), services in sorted(owners.items()):
        if len(services) > 1:
            report(f"host {host}: port {port} is published by {', '.join(sorted(services))}", None)


SPLIT_MOUNTS = ("/downloads", "/movies", "/tv", "/music", "/books", "/completed", "/incomplete")


def hardlinks_work(args: StackValidationArgs, report: Report) -> None:
    roots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w, _ in _workloads(args):
        if w.role not in ARR_ROLES + DOWNLOAD_ROLES or w.labels.get("mediastack.writes-data") != "true":
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
    for w, _ in _workloads(args):
        if w.labels.get("mediastack.writes-data") != "true":
            continue
        identity = w.labels.get("mediastack.identity")
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
    for w, _ in _workloads(args):
        if any(d.startswith("/dev/dri") for d in w.devices) and not w.group_adds:
            report(f"{w.service}: has /dev/dri without the host's render group (group_adds)", None)


def data_services_internal(args: StackValidationArgs, report: Report) -> None:
    nets = _networks(args)
    allowed = set(_config(args).get("egress_services", ["alertmanager"]))
    for w, _ in _workloads(args):
        if w.role not in ("database", "monitoring") or w.service in allowed:
            continue
        external = [n for n in w.networks if not nets.get(n, False)]
        if external:
            report(f"{w.service}: a {w.role} container on non-internal network(s) {', '.join(external)}", None)


def vpn_no_bypass(args: StackValidationArgs, report: Report) -> None:
    vpns = {w.name: w for w, _ in _workloads(args) if w.role == "vpn"}
    if not vpns:
        return
    for w, _ in _workloads(args):
        if w.role not in DOWNLOAD_ROLES:
            continue
        mode = w.network_mode or ""
        through = mode.startswith("container:") and mode.split(":", 1)[1] in vpns
        if not through or w.networks:
            report(
                f"{w.service}: has a network path that bypasses the VPN (network_mode {mode or 'bridge'}, "
                f"networks {', '.join(w.networks) or 'none'}); share the VPN container's namespace only",
                None,
            )


BACKUP_MARKER = "mediastack.backup.covers="


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
    allowed = set(_config(args).get("allow_uncovered", [])) | excluded
    missing = sorted(
        (w.service, w.labels["mediastack.state"])
        for w, _ in _workloads(args)
        if w.labels.get("mediastack.state") and w.service not in covered and w.service not in allowed
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
