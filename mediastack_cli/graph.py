"""`mediastack graph`: the stack's topology as a Graphviz picture, drawn from the offline plan.

The workloads, networks, limits, health checks and mounts are read from the plan's registrations (the
inputs the Docker provider would receive), so the picture shows what `pulumi up` would deploy; who is
public, LAN-only or internal comes from the same resolved stack the program's routes are derived from.
Graphviz's `dot` lays it out and renders SVG or PNG.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import graphviz

from mediastack.plan.routing import routes

from .offline import PlanResult, Registration

CONTAINER = "docker:index/container:Container"
SWARM_SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
FORMATS = ("svg", "png")
EDGE_ROOTS = ("data", "photos")  # the trees services share; config and cache are per service

# Fill colours by exposure; the legend repeats them.
EXPOSURE_COLOURS = {"public": "#c8e6c9", "LAN-only": "#fff3c4", "internal": "#e0e0e0"}


class GraphError(Exception):
    """The picture cannot be made (no `dot`, an unknown format); the message says what to do."""


@dataclass
class Workload:
    """One container or Swarm service, as the plan registers it."""

    name: str
    tier: str
    role: str
    image: str
    cpus: str
    memory_mib: int
    health: str
    networks: tuple[str, ...]
    network_mode: str | None
    mounts: tuple[dict[str, Any], ...]
    ports: tuple[int, ...]
    host: str | None  # None on a cluster for a global or floating service
    placement: str  # pinned | global | floating (one host: pinned)
    env: dict[str, str] = field(default_factory=dict)


def _labels(items: Any) -> dict[str, str]:
    return {i["label"]: i["value"] for i in items or [] if isinstance(i, dict)}


def _health(tests: list[str] | None) -> str:
    if not tests:
        return "none (Prometheus up)"
    if tests[0] == "CMD-SHELL":
        last = tests[1].split(";")[-1].strip()
        words = last.split()
        url = next((w for w in words if w.startswith("http://")), None)
        check = f"{words[0]} {url.split('127.0.0.1', 1)[-1]}" if url and words else last[:40]
        # A VPN client's check also restarts it when the namespace it joined is gone.
        return check + (" + VPN namespace alive" if "kill 1" in tests[1] else "")
    url = next((t for t in tests if t.startswith("http://")), None)
    if url:
        return f"{tests[1]} {url.split('127.0.0.1', 1)[-1]}"
    return " ".join(tests[1:3])


def _env_dict(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    if isinstance(env, list):
        return dict(e.split("=", 1) for e in env if isinstance(e, str) and "=" in e)
    return {}  # a secret environment is masked as a whole


def _container(r: Registration) -> Workload:
    i = r.inputs
    labels = _labels(i.get("labels"))
    return Workload(
        name=i["name"],
        tier=labels.get("mediastack.tier", "?"),
        role=labels.get("mediastack.role", "?"),
        image=labels.get("mediastack.image", str(i.get("image", "")).split("@")[0]),
        cpus=str(i.get("cpus", "?")),
        memory_mib=int(i.get("memory", 0)),
        health=_health((i.get("healthcheck") or {}).get("tests")),
        networks=tuple(n["name"] for n in i.get("networksAdvanced") or []),
        network_mode=i.get("networkMode"),
        mounts=tuple(i.get("mounts") or ()),
        ports=tuple(int(p["external"]) for p in i.get("ports") or []),
        host=labels.get("mediastack.host"),
        placement="pinned",
        env=_env_dict(i.get("envs")),
    )


def _swarm_service(r: Registration) -> Workload:
    i = r.inputs
    task = i.get("taskSpec") or {}
    spec = task.get("containerSpec") or {}
    labels = {**_labels(spec.get("labels")), **_labels(i.get("labels"))}
    limits = (task.get("resources") or {}).get("limits") or {}
    ports = ((i.get("endpointSpec") or {}).get("ports")) or []
    return Workload(
        name=i["name"],
        tier=labels.get("mediastack.tier", "?"),
        role=labels.get("mediastack.role", "?"),
        image=labels.get("mediastack.image", str(spec.get("image", "")).split("@")[0]),
        cpus=f"{int(limits.get('nanoCpus', 0)) / 1e9:g}",
        memory_mib=int(limits.get("memoryBytes", 0)) // 1024**2,
        health=_health((spec.get("healthcheck") or {}).get("tests")),
        networks=tuple(n["id"] for n in task.get("networksAdvanceds") or []),
        network_mode=None,
        mounts=tuple(spec.get("mounts") or ()),
        ports=tuple(int(p["publishedPort"]) for p in ports if "publishedPort" in p),
        host=labels.get("mediastack.host"),
        placement=labels.get("mediastack.placement", "pinned"),
        env=_env_dict(spec.get("env")),
    )


def workloads(result: PlanResult) -> list[Workload]:
    found = []
    for r in result.resources:
        if r.type == CONTAINER:
            found.append(_container(r))
        elif r.type == SWARM_SERVICE:
            found.append(_swarm_service(r))
    return found


def networks(result: PlanResult) -> dict[str, bool]:
    """Network name -> internal, as registered."""
    return {r.inputs["name"]: bool(r.inputs.get("internal", False)) for r in result.resources if r.type == NETWORK}


def exposure(stack: Any) -> dict[str, tuple[str, str]]:
    """Service -> (public | LAN-only | internal, its host name), from the routes Traefik is given."""
    found: dict[str, tuple[str, str]] = {}
    for route in routes(stack):
        # The service behind the route: the host of its URL, or Traefik itself for its own dashboard.
        target = urlsplit(route.url).hostname if "://" in route.url else "traefik"
        match = re.search(r"Host\(`([^`]+)`\)", route.rule)
        host = match.group(1) if match else ""
        if target != route.name:
            host = f"{host} (part)"  # answers part of another UI's host name (the artwork cache)
        found.setdefault(str(target), ("LAN-only" if route.lan_only else "public", host))
    for s in stack.services:
        found.setdefault(s.name, ("internal", ""))
    return found


def _size(mib: int) -> str:
    return f"{mib / 1024:g} GiB" if mib >= 1024 and mib % 512 == 0 else f"{mib} MiB"


def _node_id(kind: str, name: str) -> str:
    return f"{kind}__{name}"


@dataclass(frozen=True)
class Root:
    """A storage root services bind from: where it lives, and whether every node sees it."""

    key: str
    path: str
    shared: bool


def storage_roots(config: Any) -> list[Root]:
    paths = config.paths
    shared_at = config.storage.mount_point.rstrip("/") + "/" if config.cluster and config.storage else None

    def shared(path: str) -> bool:
        return bool(shared_at) and (path.rstrip("/") + "/").startswith(shared_at or "")

    roots = [
        Root("data", paths.data_root, shared(paths.data_root)),
        Root("photos", paths.photos_root, shared(paths.photos_root)),
        Root("config", paths.config_root, shared(paths.config_root)),
        Root("cache", paths.cache_root, shared(paths.cache_root)),
    ]
    return roots


def _root_of(source: str, roots: list[Root]) -> Root | None:
    best = None
    for root in roots:
        prefix = root.path.rstrip("/")
        if (source == prefix or source.startswith(prefix + "/")) and (best is None or len(prefix) > len(best.path)):
            best = root
    return best


def _volumes(w: Workload, roots: list[Root]) -> str:
    """The service's mounts by root, each marked shared or node-local."""
    parts: list[str] = []
    for m in w.mounts:
        if m.get("type") == "tmpfs":
            part = "tmpfs"
        else:
            root = _root_of(str(m.get("source", "")), roots)
            if root is None:
                part = "host " + str(m.get("source", ""))
            else:
                part = f"{root.key} ({'shared' if root.shared else 'node-local'})"
        if part not in parts:
            parts.append(part)
    return ", ".join(parts)


def build(result: PlanResult, stack: Any) -> graphviz.Digraph:
    """The picture's graph: hosts (or a cluster's nodes), networks, services, VPN namespace, socket readers."""
    config = stack.config
    found = workloads(result)
    nets = networks(result)
    exposed = exposure(stack)
    roots = storage_roots(config)

    g = graphviz.Digraph(f"mediastack-{result.stack}", engine="dot")
    g.attr(
        rankdir="LR",
        compound="true",
        newrank="true",
        fontname="Helvetica",
        fontsize="12",
        nodesep="0.15",
        ranksep="1.1",
        label=f"mediastack stack '{result.stack}': {len(found)} services, {len(nets)} networks",
        labelloc="t",
    )
    g.attr("node", fontname="Helvetica", fontsize="9", shape="box", style="rounded,filled")
    g.attr("edge", fontname="Helvetica", fontsize="8", color="#607d8b", arrowsize="0.6")

    vpn = next((w for w in found if w.role == "vpn"), None)
    # A client names the VPN container by its id (the program passes `container:` + the id; the plan records the id
    # the mocks gave it), or by its name.
    vpn_modes = {
        f"container:{ident}"
        for ident in (
            [vpn.name, *(r.id for r in result.resources if r.type == CONTAINER and r.inputs.get("name") == vpn.name)]
            if vpn
            else []
        )
        if ident
    }
    in_vpn = {w.name for w in found if w.network_mode in vpn_modes}

    def service_node(sub: graphviz.Digraph, w: Workload) -> None:
        where, web_host = exposed.get(w.name, ("internal", ""))
        lines = [
            f"<b>{w.name}</b>",
            f"{w.tier} · {w.cpus} CPU · {_size(w.memory_mib)}",
            f"health: {w.health}",
            f"{where}{': https://' + web_host if web_host else ''}",
        ]
        volumes = _volumes(w, roots)
        if volumes:
            lines.append("volumes: " + volumes)
        if w.placement != "pinned":
            lines.append(f"placement: {w.placement}")
        if w.ports:
            lines.append("host ports " + ",".join(str(p) for p in w.ports))
        label = "<" + "<br/>".join(_html(line) if i else line for i, line in enumerate(lines)) + ">"
        sub.node(
            _node_id("svc", w.name),
            label=label,
            fillcolor=EXPOSURE_COLOURS[where],
            penwidth="2.5" if where == "public" else "1",
            tooltip=w.image,
        )

    def place(sub: graphviz.Digraph, members: list[Workload]) -> None:
        clients = [w for w in members if w.name in in_vpn]
        for w in members:
            if w.name in in_vpn or (vpn is not None and w is vpn):
                continue
            service_node(sub, w)
        if vpn is not None and vpn in members:
            with sub.subgraph(name=f"cluster_vpn_{vpn.name}") as ns:
                ns.attr(
                    label=f"VPN namespace ({vpn.name}): nothing inside bypasses the tunnel",
                    style="dashed,filled",
                    fillcolor="#e3f2fd",
                    color="#1565c0",
                )
                service_node(ns, vpn)
                for w in clients:
                    service_node(ns, w)

    # Hosts, or on a cluster the nodes plus the global and floating groups.
    groups: dict[str, list[Workload]] = {}
    for w in found:
        if w.placement == "global":
            key = "global"
        elif w.placement == "floating" or w.host is None:
            key = "floating"
        else:
            key = w.host
        groups.setdefault(key, []).append(w)
    for w in found:  # a VPN client sits with the VPN container
        if w.name in in_vpn and vpn is not None:
            for members in groups.values():
                if w in members:
                    members.remove(w)
            groups.setdefault(vpn.host or "floating", []).append(w)
    hosts = {h.name: h for h in config.hosts}
    for key, members in groups.items():
        if not members:
            continue
        if key in hosts:
            h = hosts[key]
            title = f"host {h.name} ({h.address}): {h.cpus:g} CPU, {_size(h.memory // 1024**2)}, gpu {h.gpu.value}"
        elif key == "global":
            title = "on every node (global)"
        else:
            title = "on any node (floating)"
        with g.subgraph(name=f"cluster_host_{key}") as sub:
            sub.attr(label=title, style="rounded", color="#37474f", penwidth="1.5", fontsize="11")
            place(sub, sorted(members, key=lambda w: (w.role, w.name)))

    # Networks: internal ones dashed.
    with g.subgraph(name="cluster_networks") as sub:
        sub.attr(label="networks", style="dotted", color="#90a4ae")
        for name, internal in sorted(nets.items()):
            sub.node(
                _node_id("net", name),
                label=f"{name}\n{'internal (no egress)' if internal else 'bridge/overlay with egress'}",
                shape="ellipse",
                style="dashed,filled" if internal else "filled",
                fillcolor="#eceff1" if internal else "#bbdefb",
            )
    for w in found:
        for net in w.networks:
            if net in nets:
                g.edge(_node_id("svc", w.name), _node_id("net", net), arrowhead="none", color="#90a4ae")

    # The internet and Traefik: who is reachable, and from where.
    proxy = next((w for w in found if w.name == "traefik"), None)
    if proxy is not None:
        g.node("internet", label="internet / LAN\n:80 :443", shape="oval", style="filled", fillcolor="white")
        g.edge("internet", _node_id("svc", proxy.name), label="https", color="#2e7d32", penwidth="1.5")
        for w in found:
            where, _ = exposed.get(w.name, ("internal", ""))
            if where == "internal" or w is proxy:
                continue
            # A VPN client's route ends at the VPN container, which holds its name and port.
            target = vpn.name if (vpn is not None and w.name in in_vpn) else w.name
            g.edge(
                _node_id("svc", proxy.name),
                _node_id("svc", w.name),
                label=f"{where}{' via ' + target if target != w.name else ''}",
                color="#2e7d32" if where == "public" else "#f9a825",
                style="solid" if where == "public" else "dashed",
            )

    # The socket proxy and its readers, with the API sections it lets them read.
    socket_proxy = next((w for w in found if w.name == "socket-proxy"), None)
    if socket_proxy is not None:
        sections = sorted(k.lower() for k, v in socket_proxy.env.items() if v == "1" and k.isupper())
        shared_nets = set(socket_proxy.networks)
        for w in found:
            if w is socket_proxy or not shared_nets & set(w.networks):
                continue
            g.edge(
                _node_id("svc", w.name),
                _node_id("svc", socket_proxy.name),
                label="reads Docker API: " + ",".join(sections) if sections else "reads Docker API",
                color="#6a1b9a",
                fontcolor="#6a1b9a",
                style="bold",
            )
        g.node("docker.sock", label="/var/run/docker.sock (read-only)", shape="note", fillcolor="#f3e5f5")
        g.edge(_node_id("svc", socket_proxy.name), "docker.sock", color="#6a1b9a")

    # Storage: shared roots (every node sees them) against node-local ones. The data and photo trees get an
    # edge to each service that binds them; config and cache (every service has them) are counted.
    used: dict[str, set[str]] = {}
    for w in found:
        for m in w.mounts:
            if m.get("type") != "bind":
                continue
            root = _root_of(str(m.get("source", "")), roots)
            if root is not None:
                used.setdefault(root.key, set()).add(w.name)
    with g.subgraph(name="cluster_storage") as sub:
        sub.attr(label="storage", style="dotted", color="#90a4ae")
        for root in roots:
            if root.key not in used:
                continue
            where = f"shared ({config.storage.kind.value})" if root.shared else "node-local"
            count = "" if root.key in EDGE_ROOTS else f"\n{len(used[root.key])} services"
            sub.node(
                _node_id("vol", root.key),
                label=f"{root.key}_root\n{root.path}\n{where}{count}",
                shape="cylinder",
                style="filled,bold" if root.shared else "filled",
                fillcolor="#dcedc8" if root.shared else "#ffe0b2",
            )
    for key in EDGE_ROOTS:
        for name in sorted(used.get(key, ())):
            g.edge(_node_id("svc", name), _node_id("vol", key), arrowhead="none", style="dashed", color="#8d6e63")

    with g.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", style="dotted", color="#90a4ae")
        for where, colour in EXPOSURE_COLOURS.items():
            legend.node(f"legend__{where}", label=where, fillcolor=colour)
    return g


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def dot_path() -> str:
    found = shutil.which("dot")
    if not found:
        raise GraphError("Graphviz's `dot` is not installed; install it (Debian: apt-get install graphviz)")
    return found


def render(graph: graphviz.Digraph, out: Path) -> Path:
    """Lay out and render with `dot`, in the format the file name asks for."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise GraphError(f"--out {out}: unknown picture format '{out.suffix}'; use a .svg or .png file name")
    dot_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        graph.render(outfile=str(out), format=fmt, cleanup=True)
    except graphviz.ExecutableNotFound:
        raise GraphError("Graphviz's `dot` is not installed; install it (Debian: apt-get install graphviz)") from None
    except graphviz.CalledProcessError as error:
        raise GraphError(f"dot failed: {error.stderr!r}") from None
    return out
