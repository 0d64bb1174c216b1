"""Catalog + stack config -> the services this stack runs, fully resolved, target-agnostic.

Everything here is plain data: a ResolvedService says what a container (or, on a cluster, a Swarm
service) must look like, with host paths, limits, labels and environment worked out. The component
layer only translates it into provider inputs.
"""

from __future__ import annotations

from dataclasses import replace

from mediastack.catalog.image_facts import PUID
from mediastack.catalog.services import (
    CATALOG,
    MountKind,
    NetworkRole,
    Secret,
    Service,
)
from mediastack.model.config import Gpu, Host, Resources, StackConfig, TierName
from mediastack.model.units import format_rate
from mediastack.plan.backup_checks import textfile_flag
from mediastack.plan.checks import enabled_services
from mediastack.plan.generated_paths import binds_generated_files, generated_dir, generated_host_dir
from mediastack.plan.placement import placement, service_host
from mediastack.plan.postgres_settings import postgres_command, postgres_settings
from mediastack.plan.replica_settings import ENTRYPOINT, primary_settings, standby_settings
from mediastack.plan.resolved import ResolvedMount, ResolvedService, ResolvedStack
from mediastack.plan.routing import is_public, web_host_of
from mediastack.plan.sizing import effective_resources
from mediastack.plan.start_page import key_files
from mediastack_vocabulary import Label

# -- which services run -----------------------------------------------------------------------------


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
    if service.linuxserver or service.takes_identity:
        ident = config.identity
        env.update({"PUID": str(ident.puid), "PGID": str(ident.pgid), "UMASK": ident.umask, "TZ": ident.tz})
        if service.umask_env:
            env[service.umask_env] = ident.umask
    else:
        env["TZ"] = config.identity.tz
        if service.facts and service.facts.starts_as_root and service.facts.user == PUID:
            # Its entrypoint drops to PUID/PGID itself (and stays root without them): the stack's identity.
            env.update({"PUID": str(config.identity.puid), "PGID": str(config.identity.pgid)})
    if "JELLYFIN_PublishedServerUrl" in env and web_host:
        env["JELLYFIN_PublishedServerUrl"] = f"https://{web_host}"
    if service.allowed_hosts_env and web_host:
        # The Host header Traefik passes on, and the blackbox probe's (<name>:<port>): the app refuses others.
        probe = service.health.probe_port if service.health else None
        env[service.allowed_hosts_env] = ",".join([web_host, *([f"{service.name}:{probe}"] if probe else [])])
    env.update({k.variable: k.path for k in key_files(service, enabled, lambda s: has_value(config, s))})
    for variable, other in service.service_urls:
        web = CATALOG[other].web
        env[variable] = f"http://{other}:{web.port}" if web and other in enabled else ""
    if service.closed_without_readers and (config.cluster or not set(service.socket_readers) & set(enabled)):
        # On a cluster the readers read cgroups, not the Docker API (swarm_service.swarm_command), and Traefik
        # reads its file: with no reader, no section is open but the ping its health check uses.
        env.update(dict(service.closed_without_readers))
    env.update({variable: value(config) for variable, value in service.env_from_config})
    if service.gpu and host.gpu is Gpu.nvidia:
        env.update({"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,video,utility"})
    override = config.services.get(service.name)
    if override:
        env.update(override.env)
    return dict(sorted(env.items()))


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
    if service.linuxserver or service.takes_identity:
        ident = config.identity
        labels[Label.identity] = f"{ident.puid}:{ident.pgid}:{ident.umask}"
    return labels


def has_value(config: StackConfig, secret: Secret) -> bool:
    """A generated secret always has one; a secret the user sets only once it is set."""
    return secret.kind != "config" or config_secret(config, secret.id) is not None


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
        if spec.user == PUID:  # runs as the stack's identity, set by `user:` (the image does not drop itself)
            spec = replace(spec, user=f"{config.identity.puid}:{config.identity.pgid}")
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
                    if (secret.kind != "config" or config_secret(config, secret.id) is not None)
                    and dict(spec.secret_env_of).get(key, name) in enabled
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
                secret_files={k.path: k.secret for k in key_files(spec, enabled, lambda s: has_value(config, s))},
            )
        )
    services = _through_vpn(services, config)
    talked_to = waited_for(config, enabled)
    services = [replace(s, wait=s.health is not None and s.name in talked_to) for s in services]
    used = {role for s in services for role in s.networks}
    networks = tuple(r for r in NetworkRole if r in used)
    return ResolvedStack(stack=stack, config=config, services=tuple(services), networks=networks)
