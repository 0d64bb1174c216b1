"""The pure checks of preflight: the config and the facts read on a host in, findings out."""

from __future__ import annotations

from mediastack.model.config import Gpu, Host, StackConfig
from mediastack.model.units import MIB, format_size
from mediastack.plan.resolved import ResolvedStack

from .facts import (
    DATA_ROOT_FREE,
    DATA_TREE_PARTS,
    DISK_TRANSCODES,
    IMAGE_ALLOWANCE,
    IMAGE_STORE_READERS,
    LOG_ALLOWANCE,
    MEMORY_SLACK,
    NETWORK_FILESYSTEMS,
    NETWORK_FUSE,
    PINNED_CLIENTS,
    STATE_ALLOWANCE,
    EngineFacts,
    Finding,
    HostFacts,
    engine_needs,
    image_tag,
    older,
    services_on,
)

# -- checks (pure) -------------------------------------------------------------------------------------------


def check_engine(host: Host, engine: EngineFacts, stack: ResolvedStack) -> list[Finding]:
    found = []
    name = host.name
    on_host = set(services_on(stack, host))
    for need in engine_needs(stack):
        if older(engine.api_version, need.api):
            found.append(
                Finding(
                    name,
                    "engine",
                    "mismatch",
                    f"Docker Engine {engine.version} serves API {engine.api_version}; the stack needs API "
                    f"{need.api} (Docker {need.docker}) for {need.why}",
                    f"upgrade Docker Engine on {name} to {need.docker} or later",
                )
            )
    for pin in PINNED_CLIENTS:
        if pin.service not in on_host:
            continue
        tag = image_tag(stack.get(pin.service).image)
        if older(tag, pin.fixed_in) and engine.min_api_version and older(pin.api, engine.min_api_version):
            found.append(
                Finding(
                    name,
                    "engine",
                    "mismatch",
                    f"{pin.service} {tag} talks to Docker at API {pin.api} ({pin.source}); Docker Engine "
                    f"{engine.version} refuses API versions below {engine.min_api_version}",
                    f"set mediastack:services.{pin.service}.image_tag to {pin.fixed_in} or later, or start dockerd "
                    f"on {name} with DOCKER_MIN_API_VERSION={pin.api}",
                )
            )
    if engine.cgroup_version != "2":
        found.append(
            Finding(
                name,
                "cgroup",
                "mismatch",
                f"cgroup v{engine.cgroup_version}: the stack's memory limits and no-swap settings are written for "
                "cgroup v2 (mem_swappiness and the v1 controllers behave differently)",
                f"boot {name} with the unified hierarchy (kernel argument systemd.unified_cgroup_hierarchy=1)",
            )
        )
    for enforced, what in ((engine.memory_limit, "memory limits"), (engine.cpu_quota, "CPU limits")):
        if not enforced:
            found.append(
                Finding(
                    name,
                    "cgroup",
                    "mismatch",
                    f"the engine cannot enforce {what}: every tier's limit would be ignored",
                    f"enable the cgroup controllers on {name} (docker info lists the warnings)",
                )
            )
    if not engine.swap_limit:
        found.append(
            Finding(
                name,
                "cgroup",
                "mismatch",
                "the kernel has no swap accounting: memory_swap = memory (no swap for critical services) is ignored",
                f"enable swap accounting on {name} (cgroup v2, or kernel argument swapaccount=1 on cgroup v1)",
            )
        )
    for reader in IMAGE_STORE_READERS:
        if reader.service in on_host and engine.containerd_store:
            tag = image_tag(stack.get(reader.service).image)
            if older(tag, reader.fixed_in):
                found.append(
                    Finding(
                        name,
                        "image-store",
                        "mismatch",
                        f"{reader.service} {tag} sees no containers on an engine using the containerd image store "
                        f"({reader.source})",
                        f"set mediastack:services.{reader.service}.image_tag to {reader.fixed_in} or later",
                    )
                )
    return found


def check_gpu(host: Host, engine: EngineFacts, facts: HostFacts) -> list[Finding]:
    name = host.name
    render_nodes = sorted(n for n in facts.dri or () if n.startswith("renderD"))
    found = []
    if host.gpu in (Gpu.intel, Gpu.amd):
        if not render_nodes:
            where = "no /dev/dri" if facts.dri is None else "no render node in /dev/dri"
            found.append(
                Finding(
                    name,
                    "gpu",
                    "mismatch",
                    f"gpu is {host.gpu.value} but {name} has {where}",
                    f"install the {host.gpu.value} GPU driver on {name}, or set gpu: none",
                )
            )
        if facts.render_gid is None:
            found.append(
                Finding(
                    name,
                    "gpu",
                    "mismatch",
                    f"gpu is {host.gpu.value} but {name} has no render group",
                    f"install the GPU driver (it creates the render group) on {name}",
                )
            )
        elif facts.render_gid != host.render_gid:
            found.append(
                Finding(
                    name,
                    "gpu",
                    "mismatch",
                    f"render_gid is {host.render_gid} but the render group on {name} has gid {facts.render_gid}",
                    f"set render_gid: {facts.render_gid} for host {name}",
                )
            )
    elif host.gpu is Gpu.nvidia:
        if "nvidia" not in engine.runtimes:
            found.append(
                Finding(
                    name,
                    "gpu",
                    "mismatch",
                    f"gpu is nvidia but the engine on {name} has no nvidia runtime (runtimes: "
                    f"{', '.join(engine.runtimes) or 'none'})",
                    f"install the NVIDIA Container Toolkit on {name} and run `nvidia-ctk runtime configure "
                    "--runtime=docker`, then restart dockerd",
                )
            )
    elif render_nodes:
        found.append(
            Finding(
                name,
                "gpu",
                "note",
                f"gpu is none but {name} has {', '.join('/dev/dri/' + n for n in render_nodes)}",
                "set gpu: intel or amd (and render_gid) to transcode in hardware",
            )
        )
    return found


def check_capacity(host: Host, engine: EngineFacts) -> list[Finding]:
    name = host.name
    found = []
    if host.cpus > engine.cpus:
        found.append(
            Finding(
                name,
                "cpus",
                "mismatch",
                f"cpus is {host.cpus} but {name} has {engine.cpus}: the tiers' reservations were fitted to CPUs "
                "the host does not have",
                f"set cpus: {engine.cpus} for host {name}",
            )
        )
    elif host.cpus < engine.cpus:
        found.append(
            Finding(
                name,
                "cpus",
                "note",
                f"cpus is {host.cpus}; {name} has {engine.cpus}",
                f"set cpus: {engine.cpus} for host {name} to size the tiers for all of them",
            )
        )
    if host.memory > engine.memory * (1 + MEMORY_SLACK):
        have = engine.memory // MIB * MIB
        found.append(
            Finding(
                name,
                "memory",
                "mismatch",
                f"memory is {format_size(host.memory)} but {name} has {format_size(have)}: the reservations would "
                "not fit",
                f"set memory: {format_size(have)} for host {name}",
            )
        )
    return found


def _is_network(fstype: str) -> bool:
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith(NETWORK_FUSE)


def path_roles(config: StackConfig, host: Host) -> dict[str, str]:
    """The paths preflight reads on a host, by role. On a cluster the shared data tree is mounted by the stack
    itself and is not checked before."""
    paths = config.paths
    roles = {"config_root": paths.config_root, "cache_root": paths.cache_root}
    shared = config.storage.mount_point if config.cluster and config.storage else None
    for role, path in (("data_root", paths.data_root), ("photos_root", paths.photos_root)):
        if shared is None or not (path == shared or path.startswith(shared + "/")):
            roles[role] = path
    return roles


def disk_needs(stack: ResolvedStack, host: Host) -> dict[str, int]:
    """Free space each role needs, by our margins (see the constants)."""
    config = stack.config
    on_host = [s for s in stack.services if s.name in set(services_on(stack, host))]
    stateful = sum(1 for s in on_host if s.spec.state)
    cache = config.paths.artwork_cache_size + (DISK_TRANSCODES if config.paths.transcode_tmpfs is None else 0)
    return {
        "docker_root": len({s.image for s in on_host}) * IMAGE_ALLOWANCE + len(on_host) * LOG_ALLOWANCE,
        "config_root": stateful * STATE_ALLOWANCE,
        "cache_root": cache,
        "data_root": DATA_ROOT_FREE,
        "photos_root": 0,
    }


def check_paths(stack: ResolvedStack, host: Host, engine: EngineFacts, facts: HostFacts) -> list[Finding]:
    name = host.name
    roles = {**path_roles(stack.config, host), "docker_root": engine.docker_root}
    found = []
    for role, path in roles.items():
        fs = facts.filesystems.get(role)
        if fs is None:
            found.append(
                Finding(name, "paths", "mismatch", f"{role} {path}: cannot read its filesystem", "check the path")
            )
            continue
        if role == "config_root" and _is_network(fs.fstype):
            found.append(
                Finding(
                    name,
                    "paths",
                    "mismatch",
                    f"config_root {path} is on {fs.fstype} ({fs.mount}): the apps' SQLite databases lock up and "
                    "corrupt on a network filesystem",
                    f"set mediastack:paths.config_root to a directory on a local disk of {name}",
                )
            )
        elif role in ("config_root", "docker_root") and fs.fstype == "tmpfs":
            found.append(
                Finding(
                    name,
                    "paths",
                    "mismatch",
                    f"{role} {path} is on tmpfs ({fs.mount}): everything in it is lost at reboot",
                    f"put {role} on a local disk of {name}",
                )
            )
        elif role == "cache_root" and _is_network(fs.fstype):
            found.append(
                Finding(
                    name,
                    "paths",
                    "note",
                    f"cache_root {path} is on {fs.fstype}: transcode and cache writes cross the network",
                    "put cache_root on a local SSD",
                )
            )
    data = facts.filesystems.get("data_root")
    for part in DATA_TREE_PARTS:
        fs = facts.filesystems.get(f"data_root/{part}")
        if data is not None and fs is not None and fs.mount != data.mount:
            found.append(
                Finding(
                    name,
                    "paths",
                    "mismatch",
                    f"{roles['data_root']}/{part} is on {fs.mount}, the rest of data_root on {data.mount}: imports "
                    "between them become copies instead of hardlinks",
                    f"keep the whole data tree {roles['data_root']} on one filesystem of {name}",
                )
            )
    # Free space, added up per filesystem: paths on one disk share it.
    needs = disk_needs(stack, host)
    by_mount: dict[tuple[str, str], list[str]] = {}
    for role in roles:
        fs = facts.filesystems.get(role)
        if fs is not None and needs.get(role):
            by_mount.setdefault((fs.mount, fs.fstype), []).append(role)
    for (mount, _), members in by_mount.items():
        need = sum(needs[r] for r in members)
        free = facts.filesystems[members[0]].free
        if free < need:
            found.append(
                Finding(
                    name,
                    "disk",
                    "mismatch",
                    f"{format_size(free // MIB * MIB)} free on {mount} ({', '.join(members)}); the stack needs at "
                    f"least {format_size(need)} there",
                    f"free space on {mount} or move {members[0]} to a larger disk",
                )
            )
    return found


def check_ports(stack: ResolvedStack, host: Host, engine: EngineFacts, facts: HostFacts) -> list[Finding]:
    publishers = [s for s in stack.services if s.spec.published_ports and s.name in set(services_on(stack, host))]
    found = []
    for service in publishers:
        for port in service.spec.published_ports:
            holders = [p for p in engine.published if p.port == port]
            if any(p.service == service.name for p in holders):
                continue  # the stack's own container, from an earlier `up`
            if holders:
                who = ", ".join(f"container {p.container}" for p in holders)
                found.append(
                    Finding(
                        host.name,
                        "ports",
                        "mismatch",
                        f"port {port} on {host.name} is published by {who}; {service.name} needs it",
                        f"stop or move {holders[0].container} (docker rm -f {holders[0].container})",
                    )
                )
            elif port in facts.listening:
                found.append(
                    Finding(
                        host.name,
                        "ports",
                        "mismatch",
                        f"port {port} on {host.name} is taken by a program outside Docker; {service.name} needs it",
                        f"stop that program (`ss -ltnp 'sport = :{port}'` on {host.name} names it)",
                    )
                )
    return found


def check_host(stack: ResolvedStack, host: Host, engine: EngineFacts, facts: HostFacts) -> list[Finding]:
    return [
        *check_engine(host, engine, stack),
        *check_gpu(host, engine, facts),
        *check_capacity(host, engine),
        *check_paths(stack, host, engine, facts),
        *check_ports(stack, host, engine, facts),
    ]
