"""Stack policies that read what the program generated: Prometheus' scrape targets, Traefik's routes and
which of them are public (and behind a login)."""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Iterable
from typing import Any

import yaml
from pulumi_policy import (
    StackValidationArgs,
)

from mediastack_vocabulary import (
    HOST_FILE_MARKER,
    Label,
)

from .shapes import (
    SECRET,
    SERVICE_CONFIG,
    UNKNOWN,
    Report,
    Workload,
    plain,
)
from .stack_args import stack_config, workloads_by_name, workloads_of


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
    workloads = [w for w, _ in workloads_of(args)]
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


def web_ui_routed(args: StackValidationArgs, report: Report) -> None:
    proxies = set(stack_config(args).get("proxy_services", ["traefik"]))
    workloads = [w for w, _ in workloads_of(args)]
    table = _traefik_routes(args, workloads, proxies)
    by_name = workloads_by_name(workloads)
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
    proxies = set(stack_config(args).get("proxy_services", ["traefik"]))
    workloads = [w for w, _ in workloads_of(args)]
    table = _traefik_routes(args, workloads, proxies)
    if table is None:
        if any(w.service in proxies for w in workloads):
            report(
                "the reverse proxy's routes cannot be read from the plan (no file provider, or its file unknown): "
                "which routes are public is unknown",
                None,
            )
        return
    by_name = workloads_by_name(workloads)
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
