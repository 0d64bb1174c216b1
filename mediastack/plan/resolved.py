"""What resolution produces: plain data saying what each service's container (or Swarm service) must be,
and the few names every layer above shares (network names, the identity a service runs as).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mediastack.catalog.image_facts import PUID
from mediastack.catalog.services import (
    CATALOG,
    INTERNAL_NETWORKS,
    HealthCheck,
    NetworkRole,
    Secret,
    Service,
)
from mediastack.model.config import Host, Resources, StackConfig, TierName
from mediastack_vocabulary import Label

# The policy pack's default `resource-limits` bounds per tier (policies/mediastack_policies/resource.py, held equal
# by a test): a limit the model accepts must pass the pack.
TIER_BOUNDS = {
    "critical": {"max_cpus": 16, "max_memory_mib": 32768},
    "standard": {"max_cpus": 4, "max_memory_mib": 8192},
    "utility": {"max_cpus": 1, "max_memory_mib": 1024},
}


ALWAYS_ON = frozenset(s.name for s in CATALOG.values() if s.bundle == "core")


PROJECT = "mediastack"


def network_name(role: NetworkRole) -> str:
    return f"{PROJECT}-{role.value}"


def run_as(service: Service, config: StackConfig) -> tuple[int, int]:
    """The uid and gid the service's process writes as: the `user` the stack sets, else what its image's facts
    say it runs as once started (linuxserver images: the stack's identity, which s6 drops to)."""
    user = service.user or (service.facts.user if service.facts else "0:0")
    if user == PUID:
        return config.identity.puid, config.identity.pgid
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


@dataclass(frozen=True)
class ResolvedMount:
    type: str  # bind | tmpfs
    target: str
    source: str = ""
    read_only: bool = False
    size: int | None = None  # tmpfs only


@dataclass(frozen=True)
class ResolvedService:
    spec: Service
    host: Host
    image: str  # repo:tag or repo:tag@sha256:...
    resources: Resources
    swap_limit: int | None  # == memory for the critical tier: no swap at all
    env: dict[str, str]
    secret_env: dict[str, Secret]
    mounts: tuple[ResolvedMount, ...]
    networks: tuple[NetworkRole, ...]
    labels: dict[str, str]
    health: HealthCheck | None
    command: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    gpu_request: bool = False  # NVIDIA device request
    group_adds: tuple[str, ...] = ()
    web_host: str | None = None
    # container:<vpn service>: shares the VPN container's namespace, no networks (the container's input names
    # the VPN container by its id: mediastack/single/service.py `namespace_mode`)
    network_mode: str | None = None
    aliases: tuple[str, ...] = ()  # further names this service answers to (the VPN: its clients')
    # Others talk to it (they require it, share its namespace, or the deploy-time wiring calls it): its container
    # is created with pulumi-docker's wait, so they start once its health check passes.
    wait: bool = False
    # Generated secrets it reads from files (container path -> secret), each holding exactly the value: written
    # 0400 for the user it runs as by the host step (one host) or mounted as Swarm secrets (a cluster).
    secret_files: dict[str, Secret] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tier(self) -> TierName:
        return TierName(self.labels[Label.tier])


@dataclass(frozen=True)
class ResolvedStack:
    stack: str
    config: StackConfig
    services: tuple[ResolvedService, ...]
    networks: tuple[NetworkRole, ...] = field(default=())

    def get(self, name: str) -> ResolvedService:
        return next(s for s in self.services if s.name == name)

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(s.name for s in self.services)

    @property
    def secrets(self) -> dict[str, Secret]:
        found: dict[str, Secret] = {}
        for service in self.services:
            for secret in (
                *service.secret_env.values(),
                *service.spec.seeded_secrets,
                *service.spec.login_secrets,
                *service.secret_files.values(),
            ):
                found.setdefault(secret.id, secret)
        return dict(sorted(found.items()))


def is_internal(role: NetworkRole) -> bool:
    return role in INTERNAL_NETWORKS
