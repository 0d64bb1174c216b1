"""Where each service runs on a cluster, and the checks a cluster config must pass.

On one host everything runs there. On a Swarm the rule is the state: a service whose config directory
holds node-local state (SQLite for Jellyfin and the *arr apps, PostgreSQL, Prometheus' TSDB) is pinned
to the host that holds it, because that state must never sit on the network filesystem. Exporters run
on every node (global), the Tdarr node on every GPU node, the socket proxy on a manager (only managers
answer the Swarm API), and stateless services float wherever Swarm puts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediastack.catalog.services import CATALOG, MountKind, Service
from mediastack.model.config import CAPACITY_HEADROOM, Gpu, Host, HostRole, SharedStorageKind, StackConfig
from mediastack.model.problems import Problem
from mediastack.model.units import format_size
from mediastack.plan.sizing import effective_resources
from mediastack_vocabulary import Label

# One task per node: what they watch is the node itself.
GLOBAL_SERVICES = frozenset({"node-exporter", "cadvisor"})
# One task per GPU node (every node when no host has a GPU): batch transcoding goes where the hardware is.
PER_GPU_NODE = frozenset({"tdarr-node"})
# Only managers answer the Swarm API. No reader uses it today (Traefik reads a file; docs/security.md): the proxy
# stays where a Swarm-aware reader would need it, with every section closed.
ON_MANAGERS = frozenset({"socket-proxy"})

NODE_LABEL = "node.labels.mediastack"


@dataclass(frozen=True)
class Placement:
    mode: str  # pinned | global | floating (replicated, anywhere the constraints allow)
    host: str | None = None  # pinned: the host that holds the state
    constraints: tuple[str, ...] = ()

    @property
    def is_global(self) -> bool:
        return self.mode == "global"


def holds_state(spec: Service) -> bool:
    return any(m.kind is MountKind.state for m in spec.mounts)


def managers(config: StackConfig) -> list[Host]:
    return [h for h in config.hosts if HostRole.manager in h.roles]


def storage_hosts(config: StackConfig) -> list[Host]:
    return [h for h in config.hosts if HostRole.storage in h.roles]


def gpu_hosts(config: StackConfig) -> list[Host]:
    return [h for h in config.hosts if h.gpu is not Gpu.none]


def host_named(config: StackConfig, name: str) -> Host:
    return next(h for h in config.hosts if h.name == name)


def must_pin(spec: Service) -> bool:
    """Node-local state, an image built on one host, or ports published in host mode (Traefik)."""
    return holds_state(spec) or bool(spec.build) or bool(spec.published_ports)


def default_host(spec: Service, config: StackConfig) -> Host:
    if spec.replica_of:
        # A standby belongs on another node than what it copies: a manager first, any host otherwise.
        primary = pinned_host(CATALOG[spec.replica_of], config)
        others = [h for h in [*managers(config), *config.hosts] if h.name != primary.name]
        return others[0] if others else primary
    if spec.gpu and gpu_hosts(config):
        return gpu_hosts(config)[0]
    return (managers(config) or config.hosts)[0]


def pinned_host(spec: Service, config: StackConfig) -> Host:
    override = config.services.get(spec.name)
    if override and override.host:
        return host_named(config, override.host)
    return default_host(spec, config)


def node_labels(host: Host) -> dict[str, str]:
    """The Swarm node labels each host gets; placement constraints read them."""
    return {
        Label.host: host.name,
        Label.gpu: host.gpu.value,
        Label.disk: host.storage.value,
        Label.roles: ",".join(r.value for r in host.roles),
    }


def placement(spec: Service, config: StackConfig) -> Placement:
    if not config.cluster:
        return Placement("pinned", config.host.name)
    if spec.name in GLOBAL_SERVICES:
        return Placement("global")
    if spec.name in PER_GPU_NODE:
        return Placement("global", constraints=(f"{NODE_LABEL}.gpu != none",) if gpu_hosts(config) else ())
    if must_pin(spec):
        host = pinned_host(spec, config)
        return Placement("pinned", host.name, (f"{NODE_LABEL}.host == {host.name}",))
    if spec.name in ON_MANAGERS:
        return Placement("floating", constraints=("node.role == manager",))
    return Placement("floating")


def runs_on(p: Placement, config: StackConfig) -> list[Host]:
    """The hosts a service with this placement may run on."""
    if p.host is not None:
        return [host_named(config, p.host)]
    hosts = list(config.hosts)
    for c in p.constraints:
        if c == "node.role == manager":
            hosts = [h for h in hosts if HostRole.manager in h.roles]
        elif c == f"{NODE_LABEL}.gpu != none":
            hosts = [h for h in hosts if h.gpu is not Gpu.none]
    return hosts


# -- checks ------------------------------------------------------------------------------------------


def _storage_problems(config: StackConfig) -> list[Problem]:
    storage = config.storage
    problems: list[Problem] = []
    if storage is None:
        return [
            Problem(
                "mediastack:storage",
                None,
                f"a stack with {len(config.hosts)} hosts runs on a Swarm and needs shared storage for the data root; "
                "add storage: {kind: glusterfs} (or nfs / cephfs, see docs/cluster.md)",
            )
        ]
    mount = storage.mount_point
    paths = config.paths
    for key in ("data_root", "photos_root"):
        value = getattr(paths, key)
        if not value.startswith(mount + "/"):
            problems.append(
                Problem(
                    f"mediastack:paths.{key}",
                    value,
                    f"on a cluster it must be under storage.mount_point ({mount}) so every node sees it; "
                    f"e.g. {mount}/{key.removesuffix('_root')}",
                )
            )
    for key in ("config_root", "cache_root"):
        value = getattr(paths, key)
        if value == mount or value.startswith(mount + "/") or mount.startswith(value + "/"):
            problems.append(
                Problem(
                    f"mediastack:paths.{key}",
                    value,
                    f"must stay on node-local disk, outside storage.mount_point ({mount}): SQLite databases lock up "
                    "and corrupt on network filesystems; e.g. /srv/media/" + key.removesuffix("_root"),
                )
            )
    if storage.kind is SharedStorageKind.glusterfs:
        count = len(storage_hosts(config))
        if count != 2 and (count < 3 or count % 3):
            problems.append(
                Problem(
                    "mediastack:hosts",
                    f"{count} with role storage",
                    "a replicated GlusterFS volume needs 2, 3 or a multiple of 3 hosts with the storage role "
                    "(replica 3 survives the loss of a node without split-brain); add or remove `storage` roles",
                )
            )
    return problems


def _capacity_problems(config: StackConfig, enabled: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    mem: dict[str, int] = {h.name: 0 for h in config.hosts}
    cpu: dict[str, float] = {h.name: 0.0 for h in config.hosts}
    for name in enabled:
        spec = CATALOG[name]
        p = placement(spec, config)
        _, resources = effective_resources(spec, config)
        hosts = runs_on(p, config)
        if not hosts:
            problems.append(
                Problem(f"mediastack:services.{name}", name, "no host satisfies its placement; check hosts' roles")
            )
            continue
        if p.host is not None or p.is_global:
            for h in hosts:
                mem[h.name] += resources.memory_reservation
                cpu[h.name] += resources.cpu_reservation
        elif not any(
            h.memory - config.reserve_for_host >= resources.memory_reservation and h.cpus >= resources.cpu_reservation
            for h in hosts
        ):
            problems.append(
                Problem(
                    f"mediastack:services.{name}.resources",
                    format_size(resources.memory_reservation),
                    "its reservation fits none of the hosts it may run on; lower it or add a bigger host",
                )
            )
    for i, host in enumerate(config.hosts):
        room = int((host.memory - config.reserve_for_host) * (1 - CAPACITY_HEADROOM)) // 2**20 * 2**20
        if mem[host.name] > room:
            problems.append(
                Problem(
                    f"mediastack:hosts[{i}].memory",
                    format_size(host.memory),
                    f"memory reservations of the services on {host.name} (pinned and global) total "
                    f"{format_size(mem[host.name])}, more than the {format_size(max(room, 0))} left after "
                    "reserve_for_host and 10% headroom; move services with services.<name>.host or use a bigger host",
                )
            )
        if cpu[host.name] > host.cpus * (1 - CAPACITY_HEADROOM) + 1e-9:
            problems.append(
                Problem(
                    f"mediastack:hosts[{i}].cpus",
                    host.cpus,
                    f"CPU reservations of the services on {host.name} total {cpu[host.name]:g}, more than it has "
                    f"less 10% headroom ({host.cpus * (1 - CAPACITY_HEADROOM):g}); "
                    "move services with services.<name>.host or lower the tiers' cpu_reservation",
                )
            )
    return problems


def check_cluster(config: StackConfig, enabled: list[str]) -> list[Problem]:
    """Problems only a multi-host stack can have (and cluster keys set on a single host)."""
    if not config.cluster:
        problems = []
        if config.storage is not None:
            problems.append(
                Problem("mediastack:storage", config.storage.kind.value, "only for a stack with more than one host")
            )
        for name, override in config.services.items():
            if override.host is not None and override.host != config.host.name:
                problems.append(
                    Problem(
                        f"mediastack:services.{name}.host",
                        override.host,
                        f"this stack has one host ({config.host.name}); remove the key",
                    )
                )
        return problems
    problems = []
    names = [h.name for h in config.hosts]
    if HostRole.manager not in config.hosts[0].roles:
        problems.append(
            Problem(
                "mediastack:hosts[0].roles",
                [r.value for r in config.hosts[0].roles],
                "the first host initialises the swarm and must be a manager; add manager or reorder hosts",
            )
        )
    count = len(managers(config))
    if count % 2 == 0 and count:
        problems.append(
            Problem(
                "mediastack:hosts",
                f"{count} managers",
                "Raft needs a majority: an even number of managers tolerates no more failures than one fewer; "
                "use 1, 3 or 5 managers",
            )
        )
    for i, host in enumerate(config.hosts):
        if host.link is not None:
            problems.append(
                Problem(
                    f"mediastack:hosts[{i}].link",
                    host.link.interface,
                    "download shaping needs the single-host downloads bridge; on a cluster remove `link` and cap "
                    "the clients with downloads.max_down/max_up",
                )
            )
    if config.downloads.vpn is not None:
        problems.append(
            Problem(
                "mediastack:downloads.vpn",
                config.downloads.vpn.provider,
                "Swarm services cannot share a container's network namespace, so the clients could bypass the "
                "VPN; remove downloads.vpn on a cluster (or run the downloads on a single-host stack)",
            )
        )
    unknown_host = False  # the replica check below places services, which needs every named host to exist
    for name, override in config.services.items():
        if override.host is None or name not in CATALOG:
            continue
        path = f"mediastack:services.{name}.host"
        if override.host not in names:
            problems.append(Problem(path, override.host, f"not a host of this stack; hosts are: {', '.join(names)}"))
            unknown_host = True
        elif not must_pin(CATALOG[name]):
            problems.append(
                Problem(path, override.host, f"{name} has no node-local state and is placed by Swarm; remove the key")
            )
    for name in enabled if not unknown_host else ():
        spec = CATALOG[name]
        if spec.replica_of and pinned_host(spec, config).name == pinned_host(CATALOG[spec.replica_of], config).name:
            problems.append(
                Problem(
                    f"mediastack:services.{name}.host",
                    pinned_host(spec, config).name,
                    f"{name} copies {spec.replica_of} to survive the loss of its node; put it on another host",
                )
            )
    problems += _storage_problems(config)
    if not problems:
        problems += _capacity_problems(config, enabled)
    return problems


def service_host(spec: Service, config: StackConfig) -> Host:
    """The host whose facts (GPU, disk kind) shape a service: where it is pinned, else the first GPU host for
    GPU services, else the first host."""
    p = placement(spec, config)
    if p.host is not None:
        return host_named(config, p.host)
    if spec.gpu and gpu_hosts(config):
        return gpu_hosts(config)[0]
    return config.host
