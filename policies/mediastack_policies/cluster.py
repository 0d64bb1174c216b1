"""Cluster policies: what a Swarm adds to the stack invariants. Each node's facts travel once, in the environment
of its sysctl host command (MEDIASTACK_HOST, _CPUS, _MEMORY, _RESERVE, MEDIASTACK_SWARM_MANAGER and
MEDIASTACK_SWARM_NODE_LABELS); the shared data filesystem with every Swarm service as `mediastack.shared-root`, and
the paths that hold a service's own state as `mediastack.state-paths`; these policies read nothing else."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from pulumi_policy import StackValidationArgs

from mediastack_vocabulary import Label

from .shapes import LOCAL_COMMAND, REMOTE_COMMAND, Report, Workload, plain
from .stack import ADVISORY, _backup_coverage, _policy
from .stack_args import workloads_of

_CONSTRAINT = re.compile(r"^\s*(node\.[A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Node:
    name: str
    cpus: float
    memory: int
    reserve: int
    manager: bool
    labels: Mapping[str, str]

    def attribute(self, key: str) -> str | None:
        if key.startswith("node.labels."):
            return self.labels.get(key.removeprefix("node.labels."))
        if key == "node.role":
            return "manager" if self.manager else "worker"
        if key == "node.hostname":
            return self.name
        return None


def cluster_nodes(args: StackValidationArgs) -> list[Node]:
    """The Swarm's nodes, each from the environment of its host command (mediastack's sysctl step carries the node's
    capacities, role and labels); a node whose facts do not parse is left out."""
    nodes = []
    for r in args.resources:
        env = plain(r.props.get("environment")) if r.resource_type in (LOCAL_COMMAND, REMOTE_COMMAND) else None
        if not (isinstance(env, dict) and env.get("MEDIASTACK_HOST") and "MEDIASTACK_SWARM_MANAGER" in env):
            continue
        try:
            nodes.append(
                Node(
                    str(env["MEDIASTACK_HOST"]),
                    float(env["MEDIASTACK_HOST_CPUS"]),
                    int(env["MEDIASTACK_HOST_MEMORY"]),
                    int(env["MEDIASTACK_HOST_RESERVE"]),
                    env["MEDIASTACK_SWARM_MANAGER"] == "true",
                    dict(json.loads(env["MEDIASTACK_SWARM_NODE_LABELS"])),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return nodes


def constraints(w: Workload) -> list[str]:
    placement = (w.raw.get("taskSpec") or {}).get("placement") or {}
    return [str(c) for c in placement.get("constraints") or []]


def matches(node: Node, constraint: str) -> bool | None:
    """None when the constraint is not of a form this policy understands (then it is not judged)."""
    m = _CONSTRAINT.match(constraint)
    if not m:
        return None
    key, op, value = m.groups()
    actual = node.attribute(key)
    return (actual == value) if op == "==" else (actual != value)


def candidates(w: Workload, nodes: list[Node]) -> list[Node]:
    found = []
    for node in nodes:
        results = [matches(node, c) for c in constraints(w)]
        if all(r is not False for r in results):
            found.append(node)
    return found


def is_global(w: Workload) -> bool:
    return bool((w.raw.get("mode") or {}).get("global"))


def replicas(w: Workload) -> int:
    replicated = (w.raw.get("mode") or {}).get("replicated") or {}
    return int(replicated.get("replicas", 1)) if not is_global(w) else 0


def _under(path: str, root: str) -> bool:
    return bool(root) and (path == root or path.startswith(root.rstrip("/") + "/"))


def state_mounts(w: Workload) -> list[tuple[str, str]]:
    """(source, target) of the binds that hold the service's own state."""
    targets = {t for t in w.labels.get(Label.state_paths, "").split(",") if t}
    return [(m.source, m.target) for m in w.mounts if m.type == "bind" and m.target in targets]


def _swarm(args: StackValidationArgs) -> list[tuple[Workload, list[Node]]]:
    nodes = cluster_nodes(args)
    if not nodes:
        return []
    return [(w, nodes) for w, _ in workloads_of(args) if w.kind == "service"]


def placement_satisfiable(args: StackValidationArgs, report: Report) -> None:
    for w, nodes in _swarm(args):
        for c in constraints(w):
            if not any(matches(n, c) for n in nodes):
                report(f"{w.service}: placement constraint '{c}' matches no node of the cluster", None)
        if constraints(w) and not candidates(w, nodes):
            report(f"{w.service}: no node satisfies all of its constraints ({'; '.join(constraints(w))})", None)


def cluster_capacity(args: StackValidationArgs, report: Report) -> None:
    used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    floating: list[tuple[Workload, list[Node]]] = []
    every: dict[str, Node] = {}
    for w, nodes in _swarm(args):
        every.update({n.name: n for n in nodes})
        where = candidates(w, nodes)
        if not where:
            continue  # placement-satisfiable reports it
        if is_global(w) or len(where) == 1:
            for n in where:
                count = 1 if is_global(w) else replicas(w)
                used[n.name][0] += (w.memory_reservation or 0) * count
                used[n.name][1] += (w.cpu_reservation or 0) * count
        else:
            floating.append((w, where))
    for name, (mem, cpu) in sorted(used.items()):
        node = every[name]
        if mem > node.memory - node.reserve:
            report(
                f"node {name}: memory reservations of the services placed there total {mem / 2**30:.1f} GiB, "
                f"above the {(node.memory - node.reserve) / 2**30:.1f} GiB it has after its reserve",
                None,
            )
        if cpu > node.cpus + 1e-9:
            report(
                f"node {name}: CPU reservations of the services placed there total {cpu:g}, above {node.cpus:g}", None
            )
    for w, where in floating:
        fits = [
            n
            for n in where
            if (w.memory_reservation or 0) <= n.memory - n.reserve - used[n.name][0]
            and (w.cpu_reservation or 0) <= n.cpus - used[n.name][1] + 1e-9
        ]
        if replicas(w) and not fits:
            report(f"{w.service}: its reservation fits none of the nodes it may run on", None)


def no_sqlite_on_network_fs(args: StackValidationArgs, report: Report) -> None:
    for w, _ in workloads_of(args):
        shared = w.labels.get(Label.shared_root, "")
        if w.labels.get(Label.state) != "sqlite" or not shared:
            continue
        on_share = [t for s, t in state_mounts(w) if _under(s, shared)]
        if not w.labels.get(Label.state_paths):
            on_share = [m.target for m in w.mounts if m.target == "/config" and _under(m.source, shared)]
        if on_share:
            report(
                f"{w.service}: its SQLite state ({', '.join(on_share)}) is on the network filesystem {shared}; "
                "SQLite locks up and corrupts there: keep config_root on node-local disk",
                None,
            )


def local_state_pinned(args: StackValidationArgs, report: Report) -> None:
    for w, nodes in _swarm(args):
        shared = w.labels.get(Label.shared_root, "")
        local = [t for s, t in state_mounts(w) if not _under(s, shared)]
        if not local or is_global(w):
            continue  # global: every node keeps its own (e.g. a Tdarr node's settings)
        where = candidates(w, nodes)
        if replicas(w) != 1 or len(where) != 1:
            report(
                f"{w.service}: keeps state on node-local disk ({', '.join(local)}) but runs {replicas(w)} "
                f"replica(s) on {len(where)} possible node(s); run one replica pinned to the node that holds it",
                None,
            )


def state_survives_node_loss(args: StackValidationArgs, report: Report) -> None:
    found = _swarm(args)
    replicated = {w.labels.get(Label.replica_of) for w, _ in found}
    _, backed_up, _ = _backup_coverage(args)
    for w, _ in found:
        shared = w.labels.get(Label.shared_root, "")
        local = [t for s, t in state_mounts(w) if not _under(s, shared)]
        if not local or is_global(w) or w.labels.get(Label.replica_of):
            continue
        if w.service in replicated or w.service in backed_up:
            continue
        report(
            f"{w.service}: its state ({', '.join(local)}) lives on one node only, with no replica and no backup; "
            "losing that node loses it",
            None,
        )


def swarm_devices(args: StackValidationArgs, report: Report) -> None:
    for w, _ in _swarm(args):
        devices = sorted({m.source for m in w.mounts if m.source.startswith("/dev/")})
        if devices:
            report(
                f"{w.service}: mounts {', '.join(devices)}, but Swarm services get no devices (moby/moby#24865): the "
                "device cgroup refuses them and it transcodes on the CPU; give it an NVIDIA node, or run it on a "
                "single-host stack",
                None,
            )


CLUSTER_POLICIES = [
    _policy(
        "placement-satisfiable",
        "On a Swarm, every placement constraint matches at least one node.",
        placement_satisfiable,
    ),
    _policy(
        "cluster-capacity",
        "On a Swarm, replicas and reservations fit the nodes they may run on.",
        cluster_capacity,
    ),
    _policy(
        "no-sqlite-on-network-fs",
        "No SQLite-backed config directory on the shared network filesystem.",
        no_sqlite_on_network_fs,
    ),
    _policy(
        "local-state-pinned",
        "A Swarm service with node-local state runs one replica pinned to its node.",
        local_state_pinned,
    ),
    _policy(
        "state-survives-node-loss",
        "Every stateful Swarm service's data survives the loss of a node (shared storage, a replica or a backup).",
        state_survives_node_loss,
        level=ADVISORY,
    ),
    _policy(
        "swarm-devices",
        "A Swarm service is not given host devices it cannot use (Intel/AMD /dev/dri).",
        swarm_devices,
        level=ADVISORY,
    ),
]
