"""Catalog + stack config -> the services this stack runs, fully resolved, target-agnostic.

Everything here is plain data: a ResolvedService says what a container (or, on a cluster, a Swarm
service) must look like, with host paths, limits, labels and environment worked out. The component
layer only translates it into provider inputs.
"""

from __future__ import annotations

import difflib
import itertools
import math
import posixpath
from dataclasses import dataclass, field, replace

from mediastack.catalog.image_facts import PUID
from mediastack.catalog.services import (
    BUNDLES,
    CATALOG,
    INTERNAL_NETWORKS,
    HealthCheck,
    MountKind,
    NetworkRole,
    Secret,
    Service,
)
from mediastack.model.config import CAPACITY_HEADROOM, LINE_SHARE_MAX, Gpu, Host, Resources, StackConfig, TierName
from mediastack.model.problems import Problem
from mediastack.model.units import GIB, MIB, format_rate, format_size
from mediastack.plan.backup_checks import backup_problems, textfile_flag
from mediastack.plan.generated_paths import binds_generated_files, generated_dir, generated_host_dir
from mediastack.plan.placement import check_cluster, placement, runs_on, service_host
from mediastack.plan.postgres_settings import postgres_command, postgres_settings
from mediastack.plan.replica_settings import ENTRYPOINT, primary_settings, standby_settings
from mediastack.plan.sizing import effective_resources
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
    network_mode: str | None = None  # container:<vpn>: shares the VPN container's namespace, no networks
    aliases: tuple[str, ...] = ()  # further names this service answers to (the VPN: its clients')
    # Others talk to it (they require it, share its namespace, or the deploy-time wiring calls it): its container
    # is created with pulumi-docker's wait, so they start once its health check passes.
    wait: bool = False

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
            for secret in (*service.secret_env.values(), *service.spec.seeded_secrets, *service.spec.login_secrets):
                found.setdefault(secret.id, secret)
        return dict(sorted(found.items()))


# -- which services run -----------------------------------------------------------------------------


def enabled_services(config: StackConfig) -> list[str]:
    bundles = set(config.bundles) if config.bundles is not None else set(BUNDLES)
    chosen: list[str] = []
    for service in CATALOG.values():
        override = config.services.get(service.name)
        on = service.name in ALWAYS_ON or service.bundle in bundles
        if override is not None and override.enabled is not None:
            on = override.enabled or service.name in ALWAYS_ON
        if service.role == "vpn" and config.downloads.vpn is None:
            on = False  # only with a VPN configured
        if service.cluster_only and not config.cluster:
            on = False
        if on:
            chosen.append(service.name)
    # Companions (exporters) run only beside what they watch, unless the user said so explicitly.
    result = []
    for name in chosen:
        service = CATALOG[name]
        explicit = config.services.get(name)
        if (
            service.companion_of
            and not (explicit and explicit.enabled)
            and not any(c in chosen for c in service.companion_of)
        ):
            continue
        result.append(name)
    return result


def _layer_problems(path: str, service: Service, resources: Resources, host: Host) -> list[Problem]:
    problems = []
    if resources.cpu_reservation > resources.cpus:
        problems.append(
            Problem(
                f"{path}.resources.cpu_reservation",
                resources.cpu_reservation,
                f"above {service.name}'s cpus limit {resources.cpus}; lower it or raise cpus",
            )
        )
    if resources.memory_reservation > resources.memory:
        problems.append(
            Problem(
                f"{path}.resources.memory_reservation",
                format_size(resources.memory_reservation),
                f"above {service.name}'s memory limit {format_size(resources.memory)}; lower it or raise memory",
            )
        )
    if resources.cpus > host.cpus:
        problems.append(
            Problem(
                f"{path}.resources.cpus",
                resources.cpus,
                f"more than host {host.name} has ({host.cpus}); at most {host.cpus}",
            )
        )
    if resources.memory > host.memory:
        problems.append(
            Problem(
                f"{path}.resources.memory",
                format_size(resources.memory),
                f"more than host {host.name} has ({format_size(host.memory)})",
            )
        )
    return problems


# The engine's API sockets under both names of the run directory; the policy pack holds the same list.
ENGINE_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)


def reached_socket(source: str) -> str | None:
    """The engine socket a bind of `source` exposes, with the path resolved as the kernel does (`//`, `.`, `..`):
    the socket itself or any directory above it (`/`, `/var`, `/run`)."""
    path = posixpath.normpath("/" + source.lstrip("/"))
    return next((s for s in ENGINE_SOCKETS if path == s or s.startswith(path.rstrip("/") + "/")), None)


def exposure_problems(config: StackConfig) -> list[Problem]:
    """A public UI must exist and have a login of its own; LAN ranges must not let in everyone or the stack's
    own containers."""
    problems = [Problem(f"mediastack:lan_ranges[{i}]", cidr, why) for i, cidr, why in config.lan_range_problems()]
    for name, override in config.services.items():
        for j, mount in enumerate(override.mounts):
            socket = reached_socket(mount.source)
            if socket:
                problems.append(
                    Problem(
                        f"mediastack:services.{name}.mounts[{j}].source",
                        mount.source,
                        f"reaches the engine's socket {socket}; only the socket proxy may reach the Docker API, "
                        "mount a directory that does not contain it",
                    )
                )
    for i, name in enumerate(config.exposure.public):
        path = f"mediastack:exposure.public[{i}]"
        service = CATALOG.get(name)
        if service is None:
            close = difflib.get_close_matches(name, CATALOG, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(path, name, f"unknown service; {hint}services are: {', '.join(CATALOG)}"))
        elif service.web is None:
            problems.append(Problem(path, name, f"{name} has no web UI to make public; remove it"))
        elif service.web.login is None:
            problems.append(
                Problem(
                    path,
                    name,
                    f"{name}'s UI has no login of its own, so anyone on the internet could use it; remove it from "
                    "exposure.public (it stays reachable from lan_ranges)",
                )
            )
    return problems


def check_against_catalog(config: StackConfig) -> list[Problem]:
    """Problems only the catalog can see: names, dependencies, and whether it all fits the host."""
    problems: list[Problem] = []
    for i, bundle in enumerate(config.bundles or ()):
        if bundle not in BUNDLES:
            problems.append(
                Problem(f"mediastack:bundles[{i}]", bundle, f"unknown bundle; allowed: {', '.join(BUNDLES)}")
            )
    for name, override in config.services.items():
        path = f"mediastack:services.{name}"
        if name not in CATALOG:
            close = difflib.get_close_matches(name, CATALOG, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(path, name, f"unknown service; {hint}services are: {', '.join(CATALOG)}"))
            continue
        if override.enabled is False and name in ALWAYS_ON:
            problems.append(Problem(f"{path}.enabled", False, f"{name} is part of the core and cannot be disabled"))
        secret_names = set(CATALOG[name].secret_env)
        for key in override.env:
            if key in secret_names:
                problems.append(
                    Problem(f"{path}.env.{key}", "...", "set by the stack as a generated secret; remove it from env")
                )
        taken = {m.target for m in CATALOG[name].mounts}
        for j, mount in enumerate(override.mounts):
            if mount.target in taken:
                problems.append(
                    Problem(
                        f"{path}.mounts[{j}].target",
                        mount.target,
                        f"already used by {name}'s own mounts ({', '.join(sorted(taken))}); pick another",
                    )
                )
    link = config.host.link
    caps = (
        (("max_down", config.downloads.max_down, link.down), ("max_up", config.downloads.max_up, link.up))
        if link
        else ()
    )
    for key, cap, line in caps:
        if cap is not None and cap > line * LINE_SHARE_MAX:
            most = format_rate(int(line * LINE_SHARE_MAX) // 1000 * 1000)
            problems.append(
                Problem(
                    f"mediastack:downloads.{key}",
                    format_rate(cap),
                    f"must stay below the line rate (hosts[0].link: {format_rate(line)}) so the queue forms on the "
                    f"host, where streams keep priority; set at most {most}",
                )
            )
    problems += exposure_problems(config)

    problems += backup_problems(config)
    if not problems:
        problems += check_cluster(config, enabled_services(config))
    if problems:
        return problems

    host = config.host
    enabled = enabled_services(config)
    for name in enabled:
        for needed in CATALOG[name].requires:
            if needed not in enabled:
                problems.append(
                    Problem(
                        f"mediastack:services.{needed}.enabled",
                        False,
                        f"{name} needs {needed}; enable {needed} or disable {name}",
                    )
                )
        explicit = config.services.get(name)
        if (
            explicit
            and explicit.enabled
            and CATALOG[name].companion_of
            and not any(c in enabled for c in CATALOG[name].companion_of)
        ):
            problems.append(
                Problem(
                    f"mediastack:services.{name}.enabled",
                    True,
                    f"{name} watches {' or '.join(CATALOG[name].companion_of)}, which is disabled",
                )
            )

    total_cpu, total_mem = 0.0, 0
    for name in enabled:
        service = CATALOG[name]
        _, resources = effective_resources(service, config)
        # On a cluster, limits must fit the biggest host the service may run on (placement checks the sums).
        fits = max(runs_on(placement(service, config), config), key=lambda h: h.memory) if config.cluster else host
        problems += _layer_problems(f"mediastack:services.{name}", service, resources, fits)
        tier = effective_resources(service, config)[0]
        bound = TIER_BOUNDS[tier.value]
        over: list[tuple[str, str, str]] = []
        if resources.cpus > bound["max_cpus"]:
            over.append(("cpus", f"{resources.cpus:g}", f"{bound['max_cpus']:g}"))
        if resources.memory > bound["max_memory_mib"] * MIB:
            over.append(("memory", format_size(resources.memory), format_size(bound["max_memory_mib"] * MIB)))
        for key, shown, most in over:
            problems.append(
                Problem(
                    f"mediastack:services.{name}.resources.{key}",
                    shown,
                    f"above the {tier.value} tier's bound ({most}; policy resource-limits); "
                    f"lower it or move {name} to a bigger tier (services.{name}.tier)",
                )
            )
        total_cpu += resources.cpu_reservation
        total_mem += resources.memory_reservation
        transcodes = any(m.kind is MountKind.transcode for m in service.mounts)
        if transcodes and config.paths.transcode_tmpfs and config.paths.transcode_tmpfs * 2 > resources.memory:
            problems.append(
                Problem(
                    "mediastack:paths.transcode_tmpfs",
                    format_size(config.paths.transcode_tmpfs),
                    f"more than half of {name}'s memory limit {format_size(resources.memory)} (tmpfs pages count "
                    f"against it); lower it, raise {name}'s memory, or set null to transcode under cache_root",
                )
            )

    available_mem = int((host.memory - config.reserve_for_host) * (1 - CAPACITY_HEADROOM)) // MIB * MIB
    if config.cluster:
        return problems  # per host, in placement.check_cluster
    if total_mem > available_mem:
        problems.append(
            Problem(
                "mediastack:hosts[0].memory",
                format_size(host.memory),
                f"memory reservations of the enabled services total {format_size(total_mem)}, more than the "
                f"{format_size(max(available_mem, 0))} left after reserve_for_host and 10% headroom; "
                + smallest_fit(config, enabled),
            )
        )
    if total_cpu > host.cpus * (1 - CAPACITY_HEADROOM) + 1e-9:
        problems.append(
            Problem(
                "mediastack:hosts[0].cpus",
                host.cpus,
                f"CPU reservations of the enabled services total {total_cpu:g}, more than the host has less 10% "
                f"headroom ({host.cpus * (1 - CAPACITY_HEADROOM):g}); " + smallest_fit(config, enabled),
            )
        )
    return problems


def _reserved(config: StackConfig, names: list[str]) -> tuple[float, int]:
    picked = [effective_resources(CATALOG[n], config)[1] for n in names]
    return sum(r.cpu_reservation for r in picked), sum(r.memory_reservation for r in picked)


def smallest_fit(config: StackConfig, enabled: list[str]) -> str:
    """The smallest change that makes a single host's reservations fit: leaving out the one bundle that frees the
    least while fitting, else the host size the enabled services need."""
    host = config.host
    available = (host.memory - config.reserve_for_host) * (1 - CAPACITY_HEADROOM)
    cpu, mem = _reserved(config, enabled)
    options = []
    bundles = sorted({CATALOG[n].bundle for n in enabled} - {"core"})
    for count in (1, 2):
        for left_out in itertools.combinations(bundles, count):
            rest = [n for n in enabled if CATALOG[n].bundle not in left_out]
            rest_cpu, rest_mem = _reserved(config, rest)
            if rest_cpu <= host.cpus * (1 - CAPACITY_HEADROOM) + 1e-9 and rest_mem <= available:
                options.append((count, cpu - rest_cpu, mem - rest_mem, left_out))
        if options:
            break
    memory = math.ceil((mem / (1 - CAPACITY_HEADROOM) + config.reserve_for_host) / GIB) * GIB
    threads = math.ceil(cpu / (1 - CAPACITY_HEADROOM) - 1e-9)
    need = f"a host with at least {threads} CPU threads and {format_size(memory)}"
    if options:
        *_, left_out = min(options)
        kept = [b for b in (config.bundles if config.bundles is not None else BUNDLES) if b not in ("core", *left_out)]
        what = " and ".join(left_out)
        return f"the smallest change that fits: leave out {what} (bundles: [{', '.join(kept)}]), or {need}"
    return f"the smallest change that fits: {need}, or lower the tiers' reservations"


# -- resolution ------------------------------------------------------------------------------------


def _mounts(service: Service, config: StackConfig) -> list[ResolvedMount]:
    paths = config.paths
    mounts: list[ResolvedMount] = []
    for m in service.mounts:
        sub = f"/{m.sub}" if m.sub else ""
        if m.kind is MountKind.state:
            mounts.append(ResolvedMount("bind", m.target, f"{paths.config_root}/{service.name}{sub}", m.read_only))
        elif m.kind is MountKind.data:
            mounts.append(ResolvedMount("bind", m.target, f"{paths.data_root}{sub}", m.read_only))
        elif m.kind is MountKind.photos:
            mounts.append(ResolvedMount("bind", m.target, paths.photos_root, m.read_only))
        elif m.kind is MountKind.cache:
            mounts.append(ResolvedMount("bind", m.target, f"{paths.cache_root}/{service.name}{sub}", m.read_only))
        elif m.kind is MountKind.transcode:
            if paths.transcode_tmpfs:
                mounts.append(ResolvedMount("tmpfs", m.target, size=paths.transcode_tmpfs))
            else:
                mounts.append(ResolvedMount("bind", m.target, f"{paths.cache_root}/{service.name}/transcodes"))
        elif m.kind is MountKind.docker_socket:
            mounts.append(ResolvedMount("bind", m.target, "/var/run/docker.sock", read_only=True))
        elif m.kind is MountKind.host:
            mounts.append(ResolvedMount("bind", m.target, m.host_path, m.read_only))
    for tmp in service.tmpfs:
        mounts.append(ResolvedMount("tmpfs", tmp, size=64 * 1024**2))

    if binds_generated_files(service, config):
        # No uploads into a read-only rootfs: the host step wrote them; the directory comes in read-only.
        mounts.append(
            ResolvedMount("bind", generated_dir(service), generated_host_dir(config, service), read_only=True)
        )
    override = config.services.get(service.name)
    for extra in override.mounts if override else ():
        mounts.append(ResolvedMount("bind", extra.target, extra.source, extra.read_only))
    return mounts


def _env(service: Service, config: StackConfig, enabled: list[str], web_host: str | None, host: Host) -> dict[str, str]:
    env = dict(service.env)
    if service.linuxserver:
        ident = config.identity
        env.update({"PUID": str(ident.puid), "PGID": str(ident.pgid), "UMASK": ident.umask, "TZ": ident.tz})
        if service.umask_env:
            env[service.umask_env] = ident.umask
    else:
        env["TZ"] = config.identity.tz
    if "JELLYFIN_PublishedServerUrl" in env and web_host:
        env["JELLYFIN_PublishedServerUrl"] = f"https://{web_host}"
    for variable, other in service.service_urls:
        web = CATALOG[other].web
        env[variable] = f"http://{other}:{web.port}" if web and other in enabled else ""
    if service.closed_without_readers and (config.cluster or not set(service.socket_readers) & set(enabled)):
        # On a cluster the readers read cgroups, not the Docker API (swarm_service.swarm_command), and Traefik
        # reads its file: with no reader, no section is open but the ping its health check uses.
        env.update(dict(service.closed_without_readers))
    if service.gpu and host.gpu is Gpu.nvidia:
        env.update({"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,video,utility"})
    override = config.services.get(service.name)
    if override:
        env.update(override.env)
    return dict(sorted(env.items()))


def web_host_of(config: StackConfig, name: str) -> str:
    override = config.services.get(name)
    web = CATALOG[name].web
    subdomain = (override.subdomain if override and override.subdomain else None) or (web.subdomain if web else name)
    return f"{subdomain}.{config.domain}"


def _labels(
    service: Service, tier: TierName, config: StackConfig, web_host: str | None, image_ref: str, host: Host
) -> dict[str, str]:
    labels = {
        Label.service: service.name,
        Label.bundle: service.bundle,
        Label.tier: tier.value,
        Label.role: service.role,
        Label.image: image_ref,
    }
    if placement(service, config).host is not None:
        # Where it runs; the host's capacities travel once, on its tuning step (host_tuning.host_facts), so
        # resizing a host changes no container.
        labels[Label.host] = host.name
    if service.web:
        # Routes come from Traefik's generated file (files.py); these say what the policies check them against.
        labels[Label.web_port] = str(service.web.port)
        labels[Label.exposure] = "public" if is_public(config, service.name) else "lan"
        labels[Label.login] = service.web.login.value if service.web.login else "none"
    if service.fronts:
        # Serves part of another UI on that UI's host name: as reachable as it, behind its login.
        labels[Label.fronts] = service.fronts.service
        labels[Label.exposure] = "public" if is_public(config, service.fronts.service) else "lan"
    if service.writes_data_root:
        labels[Label.writes_data] = "true"
    if service.state:
        labels[Label.state] = service.state  # the backups must cover it (policy stateful-services-backed-up)
    if service.role == "download_client":
        # What the host shapes this client's traffic to (and the client's own limit); policies read it.
        for key, cap in zip((Label.bandwidth_down, Label.bandwidth_up), config.download_caps(), strict=True):
            if cap:
                labels[key] = format_rate(cap)
    if service.companion_of:
        labels[Label.watches] = ",".join(service.companion_of)
    if service.linuxserver:
        ident = config.identity
        labels[Label.identity] = f"{ident.puid}:{ident.pgid}:{ident.umask}"
    return labels


def is_public(config: StackConfig, name: str) -> bool:
    """Whether the internet may reach this service's web UI (exposure.public); every other UI is LAN-only."""
    return name in config.exposure.public


@dataclass(frozen=True)
class Route:
    """One Traefik router and the service behind it, as the generated dynamic config states them."""

    name: str  # the router's name, and its service's
    rule: str
    url: str  # where Traefik sends it; "api@internal" for Traefik's own dashboard
    lan_only: bool
    compress: bool = True  # Traefik's compress middleware (it skips already-compressed types such as images)
    priority: int | None = None
    login_of: str = ""  # the service whose login guards this route (its own, or the one it fronts)


def public_after_logins(stack: ResolvedStack) -> bool:
    """Whether public routes open only once the logins exist: with the deploy-time wiring, which makes them (on
    one host and on a Swarm). Until then a public UI answers the LAN only (the wiring itself reaches it from
    there)."""
    return stack.config.wiring.enabled


def routes(stack: ResolvedStack) -> list[Route]:
    """Every web UI at https://<subdomain>.<domain>, LAN-only unless exposure.public names it; the artwork cache
    in front of Jellyfin's image endpoints (priority 100, above Jellyfin's own router; as reachable as Jellyfin)."""
    config = stack.config
    found: list[Route] = []
    for service in stack.services:
        spec = service.spec
        if spec.web and service.web_host:
            url = spec.route_url or f"http://{spec.name}:{spec.web.port}"
            rule = f"Host(`{service.web_host}`)"
            found.append(Route(spec.name, rule, url, not is_public(config, spec.name), login_of=spec.name))
        front = spec.fronts
        if front and front.service in stack.enabled:
            rule = f"Host(`{web_host_of(config, front.service)}`) && {front.paths}"
            found.append(
                Route(
                    front.route,
                    rule,
                    f"http://{spec.name}:{front.port}",
                    not is_public(config, front.service),
                    compress=False,
                    priority=front.priority,
                    login_of=front.service,
                )
            )
    return found


def config_secret(config: StackConfig, secret_id: str) -> str | None:
    """A secret the user sets in the stack config (kind `config`), by its id."""
    vpn = config.downloads.vpn
    return {
        "jellyfin-api-key": config.jellyfin_api_key,
        "vpn-wireguard-private-key": vpn.wireguard_private_key if vpn else None,
        "vpn-openvpn-user": vpn.openvpn_user if vpn else None,
        "vpn-openvpn-password": vpn.openvpn_password if vpn else None,
    }.get(secret_id)


def keep_image_args(service: Service, command: tuple[str, ...]) -> tuple[str, ...]:
    """A command that starts the image's own program keeps the arguments the image's CMD gives it (its facts'
    keep_args), right after the program: e.g. PostgreSQL's `-c config_file=...`, the only place Immich's image
    loads its postgresql.conf with shared_preload_libraries. Later `-c` settings still override single keys."""
    keep = service.facts.keep_args if service.facts else ()
    if not keep or command[:1] != keep[:1] or _contains(command, keep):
        return command
    return (*keep, *command[1:])


def _contains(command: tuple[str, ...], run: tuple[str, ...]) -> bool:
    return any(command[i : i + len(run)] == run for i in range(len(command) - len(run) + 1))


def _command(service: Service, config: StackConfig, resources: Resources, host: Host) -> tuple[str, ...]:
    if service.postgres_tuned:
        primary = service.replica_of or service.name
        replicated = config.cluster and any(CATALOG[n].replica_of == primary for n in enabled_services(config))
        extra = {**primary_settings(), **(standby_settings() if service.replica_of else {})} if replicated else {}
        settings = postgres_settings(
            resources.memory, resources.cpus, host.storage, overrides={**extra, **config.postgres_settings}
        )
        command = keep_image_args(service, postgres_command(settings))
        return ("sh", ENTRYPOINT, *command) if service.replica_of else command
    if service.backup_metrics and config.backups.repository:
        return (*service.command, textfile_flag())  # the backup tool's metrics
    if service.cache_maxmemory:
        # Leave a quarter of the limit for Redis' own overhead and fragmentation, or the cache is OOM-killed
        # instead of evicting.
        return (*service.command, "--maxmemory", str(resources.memory * 3 // 4))
    if service.takes_acme and config.tls.acme_email:
        acme = "--certificatesresolvers.letsencrypt.acme"
        args = [
            f"{acme}.email={config.tls.acme_email}",
            f"{acme}.storage=/letsencrypt/acme.json",
            f"{acme}.httpchallenge.entrypoint=web",
        ]
        if config.tls.acme_staging:
            args.append(f"{acme}.caserver=https://acme-staging-v02.api.letsencrypt.org/directory")
        return (*service.command, *args)
    return service.command


VPN_CONTROL_PORT = 8000


def _vpn_env(config: StackConfig, clients: list[ResolvedService]) -> dict[str, str]:
    vpn = config.downloads.vpn
    assert vpn is not None
    env = {
        "VPN_SERVICE_PROVIDER": vpn.provider,
        "VPN_TYPE": vpn.type.value,
        # Traefik and the *arr apps connect in to the clients' web UIs through the VPN container.
        "FIREWALL_INPUT_PORTS": ",".join(str(c.spec.web.port) for c in clients if c.spec.web),
    }
    if vpn.wireguard_addresses:
        env["WIREGUARD_ADDRESSES"] = vpn.wireguard_addresses
    if vpn.server_countries:
        env["SERVER_COUNTRIES"] = ",".join(vpn.server_countries)
    if vpn.endpoint_ip:
        # The server the host's guard lets the tunnel reach (mediastack/host/vpn_guard.py). gluetun v3.40.0 reads it
        # as the server selection's target IP for both VPN types (qdm12/gluetun internal/configuration/settings/
        # serverselection.go; internal/provider/utils/pick.go picks the built-in WireGuard server with that IP,
        # or fails when none has it, and sets it as the picked OpenVPN server's address).
        env["OPENVPN_ENDPOINT_IP"] = vpn.endpoint_ip
    forwarded = next((c for c in clients if c.spec.forwarded_port), None)
    if vpn.port_forwarding:
        env["VPN_PORT_FORWARDING"] = "on"
        if forwarded is not None and forwarded.spec.web:
            # gluetun runs this whenever the provider hands out a port: qBittorrent listens on it (its WebUI
            # trusts localhost, seeded by the wiring, so no password is needed here).
            port = forwarded.spec.web.port
            env["VPN_PORT_FORWARDING_UP_COMMAND"] = (
                '/bin/sh -c \'wget -q -O- --post-data "json={\\"listen_port\\":{{PORTS}}}" '
                f"http://127.0.0.1:{port}/api/v2/app/setPreferences'"
            )
    return env


def _through_vpn(services: list[ResolvedService], config: StackConfig) -> list[ResolvedService]:
    """With a VPN, the download clients share its namespace: no networks of their own (nothing bypasses the
    tunnel), their routes and names carried by the VPN container, and a health check that restarts them when
    the namespace they joined died with a restarted VPN container."""
    vpn = next((s for s in services if s.spec.role == "vpn"), None)
    if vpn is None:
        return services
    clients = [s for s in services if s.spec.role == "download_client"]
    result = []
    for s in services:
        if s.spec.role != "download_client":
            result.append(s)
            continue
        # Traefik's route to a client keeps its URL (http://<client>:<port>): the VPN container answers to the
        # clients' names (aliases below).
        app = s.health.test[1:] if s.health else ("true",)
        alive = f"curl --silent --output /dev/null --max-time 5 http://127.0.0.1:{VPN_CONTROL_PORT}/"
        test = (
            "CMD-SHELL",
            # The VPN container's control server answers in the namespace we share; if it does not, that
            # namespace is gone (the VPN container restarted): exit, so the restart policy re-joins the new one.
            f"if ! {alive}; then kill 1; exit 1; fi; {' '.join(app)}",
        )
        result.append(
            replace(
                s,
                networks=(),
                network_mode=f"container:{vpn.name}",
                health=replace(s.health, test=test) if s.health else None,
            )
        )
    final = []
    for s in result:
        if s is vpn:
            s = replace(
                s,
                env={**s.env, **_vpn_env(config, clients)},
                aliases=tuple(c.name for c in clients),
                devices=("/dev/net/tun",),
            )
        final.append(s)
    return final


# The apps the deploy-time wiring calls (through Traefik), by role.
WIRED_ROLES = frozenset({"arr", "download_client", "subtitles", "media_server"})


def waited_for(config: StackConfig, enabled: list[str]) -> frozenset[str]:
    """The services other resources talk to as soon as they exist: what an enabled service requires, the VPN
    whose namespace the clients join, and, with the wiring on, the apps it calls and Traefik in front of them."""
    found = {r for name in enabled for r in CATALOG[name].requires}
    found |= {name for name in enabled if CATALOG[name].role == "vpn"}
    if config.wiring.enabled:
        found |= {name for name in enabled if CATALOG[name].role in WIRED_ROLES or CATALOG[name].router}
    return frozenset(found) & set(enabled)


def resolve(config: StackConfig, stack: str) -> ResolvedStack:
    enabled = enabled_services(config)
    monitored = any(
        CATALOG[name].scraper for name in enabled
    )  # no one to scrape: no service joins the monitoring network
    services = []
    for name in enabled:
        spec = CATALOG[name]
        host = service_host(spec, config)
        override = config.services.get(name)
        tier, resources = effective_resources(spec, config)
        tag = (override.image_tag if override and override.image_tag else None) or spec.tag
        image = f"{spec.image}:{tag}"
        if override and override.image_digest:
            image += f"@{override.image_digest}"
        web_host = web_host_of(config, name) if spec.web else None
        devices: tuple[str, ...] = ()
        group_adds: tuple[str, ...] = ()
        gpu_request = False
        if spec.gpu and host.gpu in (Gpu.intel, Gpu.amd):
            devices = ("/dev/dri",)
            group_adds = (str(host.render_gid),)
        elif spec.gpu and host.gpu is Gpu.nvidia:
            gpu_request = True
        roles = spec.networks if monitored else spec.networks - {NetworkRole.monitoring}
        host_network = spec.host_network and not config.cluster
        if host_network:
            roles = frozenset()  # the host's namespace: the bridges' addresses reach it
        networks = tuple(sorted(roles, key=lambda r: list(NetworkRole).index(r)))
        services.append(
            ResolvedService(
                spec=spec,
                host=host,
                image=image,
                resources=resources,
                swap_limit=resources.memory if tier is TierName.critical else None,
                env=_env(spec, config, enabled, web_host, host),
                secret_env={
                    key: secret
                    for key, secret in spec.secret_env.items()
                    if secret.kind != "config" or config_secret(config, secret.id) is not None
                },
                mounts=tuple(_mounts(spec, config)),
                networks=networks,
                labels=_labels(spec, tier, config, web_host, image, host),
                health=spec.health,
                command=_command(spec, config, resources, host),
                devices=devices,
                gpu_request=gpu_request,
                group_adds=group_adds,
                web_host=web_host,
                network_mode="host" if host_network else None,
            )
        )
    services = _through_vpn(services, config)
    talked_to = waited_for(config, enabled)
    services = [replace(s, wait=s.health is not None and s.name in talked_to) for s in services]
    used = {role for s in services for role in s.networks}
    networks = tuple(r for r in NetworkRole if r in used)
    return ResolvedStack(stack=stack, config=config, services=tuple(services), networks=networks)


def is_internal(role: NetworkRole) -> bool:
    return role in INTERNAL_NETWORKS
