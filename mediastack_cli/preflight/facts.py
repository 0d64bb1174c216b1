"""What the stack needs of each host's engine, and the facts preflight reads there (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mediastack.catalog.services import NetworkRole
from mediastack.model.config import Host
from mediastack.model.units import GIB, MIB
from mediastack.plan.resolved import ResolvedStack

Severity = Literal["mismatch", "note"]

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
