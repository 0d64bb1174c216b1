"""`mediastack preflight`: read each target host before a first `pulumi up` and report what does not fit.

Three parts: a transport per host (a fixed, read-only set of commands, run locally for localhost and over
ssh otherwise, and the Docker API at the endpoint the stack's provider uses), pure checks that turn the
facts read and the config into findings, and `preflight()` that ties them together for the command.
No config value is ever part of a shell string: commands are argv lists, quoted with shlex for ssh.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mediastack.catalog.services import NetworkRole
from mediastack.model.config import Gpu, Host, StackConfig
from mediastack.model.units import GIB, MIB, format_size
from mediastack.plan.resolve import ResolvedStack

Severity = Literal["mismatch", "note"]

COMMAND_TIMEOUT_S = 30
SSH_CONNECT_TIMEOUT_S = 10
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")

# -- what the stack needs of the engine ---------------------------------------------------------------


@dataclass(frozen=True)
class EngineNeed:
    """An API version the program's requests need, and why."""

    api: str
    docker: str  # the first Docker Engine release that serves it
    why: str


# Every stack: the Swarm services' CapAdd/CapDrop and `GET /info` CgroupVersion came with API 1.41 (Docker 20.10,
# moby docs/api/version-history.md "v1.41 API changes", tag v20.10.0), the first engine that runs on cgroup v2.
BASE_NEED = EngineNeed("1.41", "20.10", "cgroup v2 support and Swarm services' capability lists")
# A download client's default gateway on the downloads network (mediastack/single/service.py gw_priority) is the
# `GwPriority` endpoint setting of API 1.48 (Docker 28.0, moby docs/api/version-history.md "v1.48", tag v28.0.0).
# An older engine ignores it and the clients may leave through another network, past the host's shaping.
GATEWAY_NEED = EngineNeed("1.48", "28.0", "the download clients' gateway priority (GwPriority)")


@dataclass(frozen=True)
class PinnedClient:
    """An image that talks to the Docker API at a fixed version, up to a release that negotiates instead."""

    service: str
    api: str
    fixed_in: str
    source: str


# Traefik's Docker provider sends every request as API 1.24 (pkg/provider/docker/pdocker.go
# `DockerAPIVersion = "1.24"`, traefik/traefik v3.5.3 to v3.6.0); v3.6.1 negotiates
# (pkg/provider/docker/shared.go `client.WithAPIVersionNegotiation()`). Docker 29 refuses API versions below
# 1.44 unless DOCKER_MIN_API_VERSION lowers the floor (moby daemon/config/config.go `defaultMinAPIVersion`,
# docker-v29.0.0).
PINNED_CLIENTS = (PinnedClient("traefik", "1.24", "v3.6.1", "traefik pkg/provider/docker/pdocker.go at v3.5.3"),)


@dataclass(frozen=True)
class ImageStoreReader:
    """An image that cannot see containers when the engine uses the containerd image store, up to a fix."""

    service: str
    fixed_in: str
    source: str


# cAdvisor finds a Docker container's filesystem through the graph driver; with the containerd image store
# ("driver-type io.containerd.snapshotter.v1" in `docker info`) it sees none until v0.54.0 (google/cadvisor
# commit 7eda190 "add containerd-snapshotter support", first tagged v0.54.0).
IMAGE_STORE_READERS = (ImageStoreReader("cadvisor", "v0.54.0", "google/cadvisor 7eda190, tag v0.54.0"),)
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"

# Our own margins, not facts about the images: room per image pulled and per service's state directory,
# Jellyfin's on-disk transcodes when they are not on tmpfs, and the first downloads in the data tree.
IMAGE_ALLOWANCE = GIB
STATE_ALLOWANCE = GIB
DISK_TRANSCODES = 10 * GIB
DATA_ROOT_FREE = 10 * GIB
# Container logs: the `local` driver keeps max-file x max-size per container (mediastack/single/service.py LOG_OPTS).
LOG_ALLOWANCE = 5 * 10 * MIB
# MemTotal is below the installed memory by what firmware and the kernel keep: allow that much.
MEMORY_SLACK = 0.05

# SQLite locks up and corrupts on these (DESIGN: "SQLite never on a network filesystem").
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "afs", "lustre", "glusterfs", "fuse.glusterfs"}
)
NETWORK_FUSE = ("fuse.sshfs", "fuse.rclone", "fuse.ceph", "fuse.s3fs")
WEB_PORTS = (80, 443)
# The top of the one data tree (mediastack/host/directories.py): imports are hardlinks only within one filesystem.
DATA_TREE_PARTS = ("torrents", "usenet", "media")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.lstrip("v").split("-")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def older(a: str, b: str) -> bool:
    """Whether version `a` is below `b` (1.41 < 1.48, v3.5.3 < v3.6.1)."""
    return _version_tuple(a) < _version_tuple(b)


def image_tag(image: str) -> str:
    return image.split("@", 1)[0].rsplit(":", 1)[-1]


def engine_needs(stack: ResolvedStack) -> list[EngineNeed]:
    """The API versions the stack's requests need, from what it deploys."""
    needs = [BASE_NEED]
    if not stack.config.cluster and any(
        NetworkRole.downloads in s.networks and s.spec.role in ("download_client", "vpn") for s in stack.services
    ):
        needs.append(GATEWAY_NEED)
    return needs


def services_on(stack: ResolvedStack, host: Host) -> list[str]:
    """The enabled services that may run on this host (every one on a single host)."""
    if not stack.config.cluster:
        return [s.name for s in stack.services]
    from mediastack.plan.placement import placement

    return [s.name for s in stack.services if placement(s.spec, stack.config).host in (None, host.name)]


# -- facts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    container: str
    port: int
    service: str  # its mediastack.service label, "" when it has none


@dataclass(frozen=True)
class EngineFacts:
    version: str
    api_version: str
    min_api_version: str
    os: str
    kernel: str
    cgroup_version: str
    cgroup_driver: str
    storage_driver: str
    containerd_store: bool
    runtimes: tuple[str, ...]
    default_runtime: str
    cpus: int
    memory: int
    docker_root: str
    memory_limit: bool
    swap_limit: bool
    cpu_quota: bool
    published: tuple[Published, ...] = ()

    @staticmethod
    def from_api(version: dict[str, Any], info: dict[str, Any], containers: list[dict[str, Any]]) -> EngineFacts:
        driver_status = dict((k, v) for k, v in info.get("DriverStatus") or [] if isinstance(k, str))
        published = []
        for c in containers:
            names = c.get("Names") or ["?"]
            service = (c.get("Labels") or {}).get("mediastack.service", "")
            for p in c.get("Ports") or []:
                if p.get("PublicPort") and p.get("Type", "tcp") == "tcp":
                    published.append(Published(names[0].lstrip("/"), int(p["PublicPort"]), service))
        return EngineFacts(
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            min_api_version=str(version.get("MinAPIVersion", "")),
            os=str(info.get("OperatingSystem", "")),
            kernel=str(info.get("KernelVersion", "")),
            cgroup_version=str(info.get("CgroupVersion", "1")),
            cgroup_driver=str(info.get("CgroupDriver", "")),
            storage_driver=str(info.get("Driver", "")),
            containerd_store=driver_status.get("driver-type") == CONTAINERD_SNAPSHOTTER,
            runtimes=tuple(sorted(info.get("Runtimes") or {})),
            default_runtime=str(info.get("DefaultRuntime", "")),
            cpus=int(info.get("NCPU", 0)),
            memory=int(info.get("MemTotal", 0)),
            docker_root=str(info.get("DockerRootDir", "/var/lib/docker")),
            memory_limit=bool(info.get("MemoryLimit", False)),
            swap_limit=bool(info.get("SwapLimit", False)),
            cpu_quota=bool(info.get("CpuCfsQuota", False)),
            published=tuple(sorted(set(published), key=lambda p: (p.port, p.container))),
        )


@dataclass(frozen=True)
class Filesystem:
    """The filesystem a path is on (the path itself or, before it exists, its nearest existing parent)."""

    probed: str
    fstype: str
    size: int
    free: int
    mount: str


@dataclass(frozen=True)
class HostFacts:
    render_gid: int | None  # None: no `render` group
    dri: tuple[str, ...] | None  # entries of /dev/dri; None: no /dev/dri
    filesystems: dict[str, Filesystem]  # by role: config_root, ..., docker_root
    listening: frozenset[int]  # TCP ports something listens on


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    severity: Severity
    message: str
    fix: str


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


# -- parsing what the commands print ---------------------------------------------------------------------------


def parse_getent_group(text: str) -> int | None:
    fields = text.strip().split(":")
    return int(fields[2]) if len(fields) >= 3 and fields[2].isdigit() else None


def parse_listening(text: str) -> frozenset[int]:
    """Ports in LISTEN state (st 0A) from /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) > 3 and cols[3] == "0A" and ":" in cols[1]:
            with contextlib.suppress(ValueError):
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)


def parse_df(text: str) -> list[tuple[str, int, int, str]]:
    """Rows of `df -B1 --output=fstype,size,avail,target`: (fstype, size, free, mount)."""
    rows = []
    for line in text.splitlines()[1:]:
        cols = line.split(None, 3)
        if len(cols) == 4 and cols[1].isdigit() and cols[2].isdigit():
            rows.append((cols[0], int(cols[1]), int(cols[2]), cols[3]))
    return rows


def ancestors(path: str) -> list[str]:
    """The path and its parents, deepest first."""
    p = Path(path)
    return [str(p), *(str(a) for a in p.parents)]


# -- transport -------------------------------------------------------------------------------------------------


class Unreachable(Exception):
    """A host that cannot be read; the message names how it was tried."""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


class Commands:
    """Runs a fixed, read-only command (an argv list) on a host."""

    how: str

    def run(self, argv: Sequence[str]) -> Ran:
        raise NotImplementedError


class LocalCommands(Commands):
    how = "locally"

    def run(self, argv: Sequence[str]) -> Ran:
        try:
            done = subprocess.run(
                ["env", "LC_ALL=C", *argv], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unreachable(f"the host locally ({shlex.join(argv)}): {error}") from None
        return Ran(done.returncode, done.stdout, done.stderr)


def ssh_argv(user: str | None, address: str, port: str | None = None) -> list[str]:
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}"]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", port]
    return [*argv, "--", address]


class SshCommands(Commands):
    def __init__(self, user: str, address: str):
        self.prefix = ssh_argv(user, address)
        self.how = f"over ssh ({shlex.join(self.prefix)})"

    def run(self, argv: Sequence[str]) -> Ran:
        remote = shlex.join(["env", "LC_ALL=C", *argv])
        try:
            done = subprocess.run(
                [*self.prefix, remote], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unreachable(f"the host {self.how}: {error}") from None
        if done.returncode == 255:  # ssh's own failure: no connection, no login
            raise Unreachable(f"the host {self.how}: {_last_line(done.stderr) or 'ssh exited 255'}")
        return Ran(done.returncode, done.stdout, done.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def commands_for(host: Host) -> Commands:
    if host.address in LOCAL_ADDRESSES:
        return LocalCommands()
    return SshCommands(host.ssh_user, host.address)


class SshRelay:
    """A local unix socket whose every connection is `ssh ... docker system dial-stdio` on the host: how the
    Docker CLI (cli/connhelper) and so the stack's Docker provider reach an ssh:// endpoint."""

    def __init__(self, endpoint: str):
        url = urllib.parse.urlsplit(endpoint)
        remote = ["docker", "system", "dial-stdio"]
        if url.path.strip("/"):
            remote = ["docker", f"--host=unix://{url.path}", "system", "dial-stdio"]
        self.argv = [*ssh_argv(url.username, url.hostname or "", str(url.port) if url.port else None)]
        self.argv.append(shlex.join(remote))
        self.how = shlex.join(self.argv)
        self.errors: list[str] = []
        self._dir = tempfile.mkdtemp(prefix="mediastack-preflight-")
        self.path = str(Path(self._dir) / "docker.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._outs: list[threading.Thread] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            try:
                proc = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            except OSError as error:
                self.errors.append(str(error))
                conn.close()
                continue
            self._procs.append(proc)
            threading.Thread(target=self._pump_in, args=(conn, proc), daemon=True).start()
            out = threading.Thread(target=self._pump_out, args=(conn, proc), daemon=True)
            self._outs.append(out)
            out.start()

    def _pump_in(self, conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := conn.recv(65536):
                proc.stdin.write(chunk)
                proc.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()

    def _pump_out(self, conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(proc.stdout.fileno(), 65536):
                conn.sendall(chunk)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        code = proc.wait()
        if code != 0:
            self.errors.append(_last_line(proc.stderr.read().decode(errors="replace")) or f"ssh exited {code}")

    def failure(self) -> str | None:
        """Why ssh ended, once it has (it ends on its own when it cannot connect)."""
        for thread in list(self._outs):
            thread.join(timeout=SSH_CONNECT_TIMEOUT_S + 5)
        return self.errors[-1] if self.errors else None

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def docker_client(endpoint: str) -> Iterator[Any]:
    """A Docker SDK client for the endpoint; Unreachable (naming the endpoint and how) when it does not answer."""
    import docker
    import docker.errors

    relay = SshRelay(endpoint) if endpoint.startswith("ssh://") else None
    base_url = f"unix://{relay.path}" if relay else endpoint
    how = f"{endpoint} ({relay.how})" if relay else endpoint
    try:
        try:
            client = docker.DockerClient(base_url=base_url, version="auto", timeout=COMMAND_TIMEOUT_S)
        except docker.errors.DockerException as error:
            reason = (relay.failure() if relay else None) or _reason(error)
            raise Unreachable(f"Docker at {how}: {reason}") from None
        try:
            yield client
        finally:
            client.close()
    finally:
        if relay:
            relay.close()


def _reason(error: Exception) -> str:
    text = str(error)
    for known in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if known in text:
            return known
    return text.removeprefix("Error while fetching server API version: ")


def docker_endpoint(host: Host) -> str:
    from mediastack.single.stack import docker_endpoint as stack_endpoint

    return stack_endpoint(host)


def read_engine(client: Any) -> EngineFacts:
    return EngineFacts.from_api(client.version(), client.info(), client.api.containers(all=False))


def read_host(commands: Commands, config: StackConfig, host: Host, docker_root: str) -> HostFacts:
    group = commands.run(["getent", "group", "render"])
    dri = commands.run(["ls", "-1", "/dev/dri"])
    tcp = commands.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    roles = {**path_roles(config, host), "docker_root": docker_root}
    if "data_root" in roles:
        roles.update({f"data_root/{part}": f"{roles['data_root']}/{part}" for part in DATA_TREE_PARTS})
    candidates = sorted({a for p in roles.values() for a in ancestors(p)})
    existing = set(commands.run(["stat", "--printf=%n\\0", "--", *candidates]).out.split("\0"))
    probed = {role: next(a for a in ancestors(p) if a in existing or a == "/") for role, p in roles.items()}
    order = sorted(set(probed.values()))
    df = parse_df(commands.run(["df", "-B1", "--output=fstype,size,avail,target", "--", *order]).out)
    by_path = dict(zip(order, df, strict=False)) if len(df) == len(order) else {}
    filesystems = {role: Filesystem(path, *by_path[path]) for role, path in probed.items() if path in by_path}
    return HostFacts(
        render_gid=parse_getent_group(group.out) if group.code == 0 else None,
        dri=tuple(sorted(dri.out.split())) if dri.code == 0 else None,
        filesystems=filesystems,
        listening=parse_listening(tcp.out),
    )


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
