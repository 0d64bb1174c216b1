"""Stack policies: the invariants between services that no per-container linter sees."""

from __future__ import annotations

import base64
import re
import shlex
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

from mediastack_vocabulary import (
    ARR_ROLES,
    BACKUP_COVERS_MARKER,
    DOWNLOAD_ROLES,
    HOST_FILE_MARKER,
    WORKLOAD_LABELS,
    Label,
    Role,
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


def _workloads(args: StackValidationArgs) -> list[tuple[Workload, str]]:
    found = []
    for r in args.resources:
        w = workload(r.resource_type, r.name, r.props)
        if w is not None:
            found.append((w, r.urn))
    return found


def _classified(args: StackValidationArgs, report: Report, concern: str) -> list[tuple[Workload, str]]:
    """The workloads the program labelled; each one without its labels is reported as unknown, never passed:
    what it is (an *arr app, a download client, a database) is read from those labels."""
    known = []
    for w, urn in _workloads(args):
        missing = [key for key in WORKLOAD_LABELS if not w.labels.get(key)]
        if missing:
            report(
                f"{w.service}: unknown workload (no {', '.join(missing)} label), so {concern} cannot be checked; "
                "deploy it through the mediastack program, or give it the program's labels",
                urn,
            )
        else:
            known.append((w, urn))
    return known


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
            if labels.get(Label.file) == "prometheus/prometheus.yml":
                data = props.get("data")
                return base64.b64decode(str(data)).decode() if data not in (None, SECRET, UNKNOWN) else None
        # A read-only rootfs: the host step writes it into the directory the container binds.
        for path, content in _bound_files(args, w).items():
            if path.endswith("/prometheus.yml"):
                return content
    return None


# How the host step writes a generated file (mediastack/host/directories.py files_script): its quoted host path,
# then its content in base64 (an alphabet that cannot end the here-document).
_HOST_FILE = re.compile(
    rf"""target="\$ROOT"('[^']*'|\S+)\n.*?<<'{HOST_FILE_MARKER}'\n(.*?){HOST_FILE_MARKER}""", re.DOTALL
)


def _host_files(args: StackValidationArgs) -> dict[str, str]:
    """Host path -> content of every file the stack's host steps write for read-only-rootfs containers."""
    found: dict[str, str] = {}
    for r in args.resources:
        create = plain(r.props).get("create") if r.resource_type.startswith("command:") else None
        if not isinstance(create, str):
            continue
        for quoted, encoded in _HOST_FILE.findall(create):
            found[shlex.split(quoted)[0]] = base64.b64decode(encoded).decode()
    return found


def _bound_files(args: StackValidationArgs, w: Workload, inside: str = "/") -> dict[str, str]:
    """Container path -> content of the host-written files a workload binds (read-only) under `inside`."""
    files = _host_files(args)
    found: dict[str, str] = {}
    # A container's mounts, or a Swarm service's (Traefik binds its routes directory from its host there too).
    spec = (w.raw.get("taskSpec") or {}).get("containerSpec") or {}
    for mount in w.raw.get("mounts") or spec.get("mounts") or []:
        source, target = str(mount.get("source") or ""), str(mount.get("target") or "")
        if mount.get("type") != "bind" or not source:
            continue
        for path, content in files.items():
            if path.startswith(source.rstrip("/") + "/"):
                in_container = target.rstrip("/") + path[len(source.rstrip("/")) :]
                if in_container.startswith(inside):
                    found[in_container] = content
    return found


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
        for name in w.labels.get(Label.watches, "").split(",")
        if name
    }
    for w in workloads:
        if w.name not in targets and w.service not in targets and w.service not in watched:
            report(f"{w.service}: neither scraped nor probed by Prometheus, nor watched by a scraped exporter", None)


FILE_PROVIDER = "--providers.file.directory="


def _command(w: Workload) -> list[str]:
    if w.kind == "service":
        spec = (w.raw.get("taskSpec") or {}).get("containerSpec") or {}
        return [str(a) for a in (spec.get("command") or []) + (spec.get("args") or [])]
    return [str(a) for a in w.raw.get("command") or []]


def _traefik_files(args: StackValidationArgs, proxy: Workload) -> list[str] | None:
    """The dynamic config files Traefik's file provider reads: uploaded into its container, or Swarm configs
    mounted in the provider's directory. None when it has no file provider, or a file is not known yet."""
    directory = next((a[len(FILE_PROVIDER) :] for a in _command(proxy) if a.startswith(FILE_PROVIDER)), None)
    if directory is None:
        return None
    inside = directory.rstrip("/") + "/"
    texts = []
    for upload in proxy.raw.get("uploads") or []:
        if str(upload.get("file", "")).startswith(inside):
            content = upload.get("content")
            if content in (None, SECRET, UNKNOWN):
                return None
            texts.append(str(content))
    spec = (proxy.raw.get("taskSpec") or {}).get("containerSpec") or {}
    wanted = {
        str(c.get("configName")) for c in spec.get("configs") or [] if str(c.get("fileName", "")).startswith(inside)
    }
    for r in args.resources:
        if r.resource_type == SERVICE_CONFIG and wanted:
            props = plain(r.props)
            if str(props.get("name")) in wanted:
                data = props.get("data")
                if data in (None, SECRET, UNKNOWN):
                    return None
                texts.append(base64.b64decode(str(data)).decode())
    texts.extend(content for _, content in sorted(_bound_files(args, proxy, inside).items()))
    return texts


def _traefik_routes(
    args: StackValidationArgs, workloads: list[Workload], proxies: set[str]
) -> tuple[Workload, list[tuple[str, dict[str, Any], dict[str, Any]]]] | None:
    """(the proxy, [(router name, router, its middlewares by name)]) from the proxy's file provider."""
    proxy = next((w for w in workloads if w.service in proxies), None)
    if proxy is None:
        return None
    texts = _traefik_files(args, proxy)
    if texts is None:
        return None
    routers: dict[str, dict[str, Any]] = {}
    services: dict[str, Any] = {}
    middlewares: dict[str, Any] = {}
    for text in texts:
        http = (yaml.safe_load(text) or {}).get("http") or {}
        routers.update(http.get("routers") or {})
        services.update(http.get("services") or {})
        middlewares.update(http.get("middlewares") or {})
    found = []
    for name, router in sorted(routers.items()):
        target = str(router.get("service"))
        backend = dict(services.get(target) or {}) if target != "api@internal" else {"internal": proxy.service}
        chain = {m: middlewares.get(m) or {} for m in router.get("middlewares") or []}
        found.append((name, {**router, "backend": backend}, chain))
    return proxy, found


def _route_hosts(router: dict[str, Any]) -> list[str]:
    """The names a router sends its requests to (the host part of each server URL)."""
    backend = router.get("backend") or {}
    if "internal" in backend:
        return [backend["internal"]]
    servers = (backend.get("loadBalancer") or {}).get("servers") or []
    return [re.sub(r"^[a-z]+://", "", str(s.get("url", ""))).split("/")[0].split(":")[0] for s in servers]


def _lan_only(chain: dict[str, dict[str, Any]]) -> bool:
    """A router is LAN-only when one of its middlewares is an IP allow-list that does not allow everyone."""
    for middleware in chain.values():
        ranges = (middleware.get("ipAllowList") or {}).get("sourceRange") or []
        if ranges and not any(str(r).endswith("/0") for r in ranges):
            return True
    return False


def _by_name(workloads: list[Workload]) -> dict[str, Workload]:
    """Workloads by every name they answer to on the networks: service, container name, and VPN aliases."""
    found: dict[str, Workload] = {}
    for w in workloads:
        found.setdefault(w.service, w)
        found.setdefault(w.name, w)
    # An alias names the container that answers for another (the VPN container for its clients): the client's
    # own workload, found above, is what the route means.
    for w in workloads:
        for net in w.raw.get("networksAdvanced") or []:
            for alias in net.get("aliases") or [] if isinstance(net, dict) else []:
                found.setdefault(str(alias), w)
    return found


def web_ui_routed(args: StackValidationArgs, report: Report) -> None:
    proxies = set(_config(args).get("proxy_services", ["traefik"]))
    workloads = [w for w, _ in _workloads(args)]
    table = _traefik_routes(args, workloads, proxies)
    by_name = _by_name(workloads)
    routed = {by_name[h].service for _, r, _ in (table[1] if table else []) for h in _route_hosts(r) if h in by_name}
    for w in workloads:
        port = w.labels.get(Label.web_port)
        if not port or w.service in proxies:
            continue
        if table is None:
            report(
                f"{w.service}: web UI on port {port}, but the reverse proxy's routes (its file provider) are not "
                "in this stack",
                None,
            )
        elif w.service not in routed:
            report(f"{w.service}: web UI on port {port} is not routed through the reverse proxy", None)
        if w.published_ports:
            report(f"{w.service}: web UI is published on the host, bypassing the reverse proxy", None)


NO_LOGIN = ("", "none")


def public_routes_need_login(args: StackValidationArgs, report: Report) -> None:
    """A router without an IP allow-list is open to the internet: what it reaches must ask who you are."""
    proxies = set(_config(args).get("proxy_services", ["traefik"]))
    workloads = [w for w, _ in _workloads(args)]
    table = _traefik_routes(args, workloads, proxies)
    if table is None:
        if any(w.service in proxies for w in workloads):
            report(
                "the reverse proxy's routes cannot be read from the plan (no file provider, or its file unknown): "
                "which routes are public is unknown",
                None,
            )
        return
    by_name = _by_name(workloads)
    for name, router, chain in table[1]:
        if _lan_only(chain):
            continue
        for host in _route_hosts(router):
            w = by_name.get(host)
            if w is None:
                report(
                    f"router {name}: public route to {host or '?'}, which is no workload of this stack (unknown)", None
                )
                continue
            fronts = w.labels.get(Label.fronts)
            login_of = by_name.get(fronts) if fronts else w
            login = (login_of.labels.get(Label.login, "") if login_of else "").lower()
            if login in NO_LOGIN:
                via = f" (in front of {fronts})" if fronts else ""
                report(
                    f"router {name}: public route (no ipAllowList) to {w.service}{via}, which has no login of its "
                    "own; keep it LAN-only (remove it from mediastack:exposure.public)",
                    None,
                )


def download_bandwidth(args: StackValidationArgs, report: Report) -> None:
    for w, _ in _classified(args, report, "whether it is a download client that needs a bandwidth limit"):
        if w.role in DOWNLOAD_ROLES and not (w.labels.get(Label.bandwidth_down) and w.labels.get(Label.bandwidth_up)):
            report(
                f"{w.service}: download client without a bandwidth limit (down and up); set "
                "mediastack:downloads.max_down and max_up, or a host link to shape it there",
                None,
            )


def unique_host_ports(args: StackValidationArgs, report: Report) -> None:
    owners: dict[tuple[str, int], list[str]] = defaultdict(list)
    for w, _ in _workloads(args):
        for port in w.published_ports:
            owners[(w.labels.get(Label.host, "?"), port)].append(w.service)
    for (host, port), services in sorted(owners.items()):
        if len(services) > 1:
            report(f"host {host}: port {port} is published by {', '.join(sorted(services))}", None)


SPLIT_MOUNTS = ("/downloads", "/movies", "/tv", "/music", "/books", "/completed", "/incomplete")


def hardlinks_work(args: StackValidationArgs, report: Report) -> None:
    roots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w, _ in _classified(args, report, "whether it shares the one data root"):
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
    for w, _ in _classified(args, report, "whether it writes the data root as the one identity"):
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
    for w, _ in _workloads(args):
        if any(d.startswith("/dev/dri") for d in w.devices) and not w.group_adds:
            report(f"{w.service}: has /dev/dri without the host's render group (group_adds)", None)


def data_services_internal(args: StackValidationArgs, report: Report) -> None:
    nets = _networks(args)
    allowed = set(_config(args).get("egress_services", ["alertmanager"]))
    for w, _ in _classified(args, report, "whether it is a database kept off external networks"):
        if w.role not in (Role.database, Role.monitoring) or w.service in allowed:
            continue
        external = [n for n in w.networks if not nets.get(n, False)]
        if external:
            report(f"{w.service}: a {w.role} container on non-internal network(s) {', '.join(external)}", None)


def vpn_no_bypass(args: StackValidationArgs, report: Report) -> None:
    vpns = {w.name: w for w, _ in _workloads(args) if w.role == Role.vpn}
    if not vpns:
        return
    for w, _ in _classified(args, report, "whether it must reach the network only through the VPN"):
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
    allowed = set(_config(args).get("allow_uncovered", [])) | excluded
    missing = sorted(
        (w.service, w.labels[Label.state])
        for w, _ in _classified(args, report, "whether it keeps state the backups must cover")
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
