"""The whole media stack on a Docker Swarm: every host tuned and joined, shared storage mounted, the same
catalog services as Swarm services, overlay networks, generated files as configs and passwords as secrets."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pulumi
import pulumi_docker as docker

from mediastack.catalog.services import MountKind, NetworkRole
from mediastack.generate.files import (
    CONTAINER_PATHS,
    PUBLIC_ROUTES_FILE,
    SMTP_PASSWORD_FILE,
    binds_generated_files,
    generate_files,
    generated_host_path,
    traefik_public_routes,
)
from mediastack.generate.replica import PRIMARY, REPLICA
from mediastack.host.backup import StackBackups, StackBackupsArgs, repository_password
from mediastack.host.directories import HostStorage, HostStorageArgs, files_script, host_command
from mediastack.host.shared_storage import SharedStorage, SharedStorageArgs
from mediastack.host.swarm_bootstrap import SwarmCluster, SwarmClusterArgs
from mediastack.host.tuning import HostTuning, HostTuningArgs
from mediastack.model.config import Host, HostRole
from mediastack.plan.placement import Placement, host_named, node_labels, placement
from mediastack.plan.resolved import ResolvedStack, run_as
from mediastack.quoting import sh
from mediastack.single.network import StackNetwork, StackNetworkArgs
from mediastack.single.stack import MediaStackArgs, _secret_resource, docker_endpoint, generated_credentials
from mediastack.swarm.service import MediaSwarmService, SwarmServiceArgs, b64, config_name, gpu_daemon_settings
from mediastack.wiring.provider import PipelineWiring, PipelineWiringArgs
from mediastack_vocabulary import Label


def swarm_node_facts(host: Host) -> dict[str, str]:
    """A node's Swarm facts for the cluster policies (placement against roles and node labels), carried with its
    capacities by its sysctl step (host_tuning.host_facts), not by the services: resizing a node updates no service."""
    return {
        "MEDIASTACK_SWARM_MANAGER": "true" if HostRole.manager in host.roles else "false",
        "MEDIASTACK_SWARM_NODE_LABELS": json.dumps(node_labels(host), separators=(",", ":"), sort_keys=True),
    }


def encrypted_networks(stack: ResolvedStack, placements: dict[str, Placement]) -> set[NetworkRole]:
    """Networks whose members may sit on different hosts carry their traffic across the LAN: IPsec for those.
    A network whose every member is pinned to one host keeps its traffic on that host and skips the cost."""
    encrypted = set()
    for role in stack.networks:
        members = [placements[s.name] for s in stack.services if role in s.networks]
        hosts = {p.host for p in members}
        if len(hosts) != 1 or None in hosts:
            encrypted.add(role)
    return encrypted


@dataclass(frozen=True)
class ClusterBackups:
    """Every node's backups: one repository, one password, each node its own services (restic --host)."""

    password: pulumi.Output[str]
    nodes: dict[str, StackBackups]


def on_host(stack: ResolvedStack, placements: dict[str, Placement], host: str) -> ResolvedStack:
    """The stack as one host sees it: every service that may run there (not those pinned elsewhere), so its
    directories and first-start files (with their generated credentials) go only where they are used."""
    mine = tuple(s for s in stack.services if placements[s.name].host in (None, host))
    return replace(stack, services=mine)


def backup_view(stack: ResolvedStack, placements: dict[str, Placement], host: str) -> ResolvedStack | None:
    """What one host backs up: the services whose state it holds (the first host also takes the floating ones,
    whose state is on the shared filesystem), as a one-host stack; None when it holds no state."""
    config = stack.config
    first = config.hosts[0].name
    mine = tuple(
        s
        for s in stack.services
        if placements[s.name].host == host
        or (host == first and placements[s.name].host is None and not placements[s.name].is_global)
    )
    if not any(s.spec.state for s in mine):
        return None
    one = next(h for h in config.hosts if h.name == host)
    return replace(stack, config=config.model_copy(update={"hosts": [one]}), services=mine)


class SwarmMediaStack(pulumi.ComponentResource):
    """Everything one stack config describes, on a Swarm of its hosts."""

    def __init__(self, name: str, args: MediaStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:stack:SwarmMediaStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = args.stack
        config = stack.config
        first = config.hosts[0]
        placements = {s.name: placement(s.spec, config) for s in stack.services}

        # Every node: kernel and daemon settings first (daemon.json is read when dockerd starts).
        tuning = {
            h.name: HostTuning(
                f"{name}-{h.name}-tuning",
                HostTuningArgs(
                    host=h,
                    reserve_for_host=config.reserve_for_host,
                    daemon_extra=gpu_daemon_settings(h) or None,
                    swarm_node=swarm_node_facts(h),
                ),
                child,
            )
            for h in config.hosts
        }
        shared = SharedStorage(
            f"{name}-shared-storage", SharedStorageArgs(config=config, hosts=list(config.hosts)), child
        )
        self.secrets = {
            sid: _secret_resource(f"{name}-{sid}", secret, child, config) for sid, secret in stack.secrets.items()
        }
        files = generate_files(stack)
        # One host after the other: the data tree on the shared filesystem is created once, without races.
        dirs: list[pulumi.Resource] = []
        for h in config.hosts:
            dirs.append(
                HostStorage(
                    f"{name}-{h.name}-storage",
                    HostStorageArgs(
                        stack=on_host(stack, placements, h.name),
                        host=h,
                        secrets=self.secrets,
                        after=[shared.mounts[h.name], *dirs[-1:]],
                        files=files,
                    ),
                    child,
                )
            )
        swarm = SwarmCluster(
            f"{name}-swarm",
            SwarmClusterArgs(config=config, prepared={h: [t] for h, t in tuning.items()}),
            child,
        )

        # Services are declared to a manager; the swarm schedules them on the nodes.
        provider = docker.Provider(f"{name}-{first.name}-docker", host=docker_endpoint(first), opts=child)
        on_swarm = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=swarm.steps)

        encrypted = encrypted_networks(stack, placements)
        self.networks = {
            role: StackNetwork(
                f"{name}-{role.value}",
                StackNetworkArgs(role=role, stack=stack.stack, overlay=True, encrypted=role in encrypted),
                on_swarm,
            )
            for role in stack.networks
        }
        network_names = {role: net.name for role, net in self.networks.items()}

        swarm_secrets = {
            sid: docker.Secret(
                f"{name}-{sid}-secret",
                name=f"mediastack-{sid}",
                data=value.apply(lambda v: b64(str(v))),  # stays secret: the value is
                opts=on_swarm,
            )
            for sid, value in self.secrets.items()
        }
        # Traefik's routes are a file on its host instead (generated_paths.binds_generated_files).
        uploads = sorted(
            {path for s in stack.services if not binds_generated_files(s.spec, config) for path in s.spec.uploads}
        )
        configs = {
            path: docker.ServiceConfig(
                f"{name}-{path.replace('/', '-').replace('.', '-')}-config",
                name=config_name(path, files[path]),
                data=b64(files[path]),
                labels=[docker.ServiceConfigLabelArgs(label=Label.file, value=path)],
                opts=on_swarm,
            )
            for path in uploads
        }
        smtp = config.alerting.email
        secret_files: dict[str, dict[str, docker.Secret]] = {}
        if smtp and smtp.password and "alertmanager" in stack.enabled:
            smtp_secret = docker.Secret(
                f"{name}-smtp-password-secret",
                name="mediastack-smtp-password",
                data=pulumi.Output.secret(b64(smtp.password)),
                opts=on_swarm,
            )
            secret_files["alertmanager"] = {SMTP_PASSWORD_FILE: smtp_secret}
        for service in stack.services:  # generated secrets read from files: the stack's Swarm secret of each
            for path, secret in service.secret_files.items():
                secret_files.setdefault(service.name, {})[path] = swarm_secrets[secret.id]

        # With a standby, the primary reads the same pg_hba (its replication line) as the replica.
        extra = {PRIMARY: ("immich-postgres/pg_hba.conf",)} if REPLICA in stack.enabled else {}
        assert config.storage is not None
        self.services: dict[str, MediaSwarmService] = {}
        for service in stack.services:
            p = placements[service.name]
            needs = [self.services[r] for r in service.spec.requires if r in self.services]
            self.services[service.name] = MediaSwarmService(
                f"{name}-{service.name}",
                SwarmServiceArgs(
                    service=service,
                    placement=p,
                    networks=network_names,
                    secrets=self.secrets,
                    swarm_secrets=swarm_secrets,
                    configs={
                        CONTAINER_PATHS[p]: configs[p]
                        for p in (*service.spec.uploads, *extra.get(service.name, ()))
                        if p in configs
                    },
                    secret_files=secret_files.get(service.name, {}),
                    secret_file_owner=run_as(service.spec, config),
                    labels={
                        Label.placement: p.mode,
                        Label.shared_root: config.storage.mount_point,
                        **({Label.state: service.spec.state} if service.spec.state else {}),
                        **({Label.replica_of: service.spec.replica_of} if service.spec.replica_of else {}),
                        Label.state_paths: ",".join(m.target for m in service.spec.mounts if m.kind is MountKind.state),
                    },
                ),
                pulumi.ResourceOptions(
                    parent=self, providers={"docker": provider}, depends_on=[*swarm.steps, *dirs, *needs]
                ),
            )

        if config.wiring.enabled:
            wiring = PipelineWiring(
                f"{name}-wiring",
                PipelineWiringArgs(
                    stack=stack, secrets=self.secrets, services={n: s.service for n, s in self.services.items()}
                ),
                child,
            )
            public = traefik_public_routes(stack)
            if public is not None:
                # As on one host: the routes file Traefik's host wrote keeps every UI on the LAN; this step adds
                # the public routers to the directory Traefik binds from that host (its file provider watches it)
                # once the wiring made the logins.
                text, guarded = public
                traefik = stack.get("traefik").spec
                where = host_named(config, placements["traefik"].host or first.name)
                path = generated_host_path(config, traefik, PUBLIC_ROUTES_FILE)
                host_command(
                    f"{name}-{where.name}-public-routes",
                    where,
                    files_script({path: text}),
                    f'rm -f "${{ROOT:-}}"{sh(path)}',
                    pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[*dirs, *(wiring.logins.get(s) or self.services[s] for s in guarded)],
                    ),
                )
        self.credentials = generated_credentials(stack, self.secrets)
        self.backups = self._backups(name, stack, placements, dirs) if config.backups.repository else None

        self.urls = {s.name: f"https://{s.web_host}" for s in stack.services if s.web_host}
        self.register_outputs({"urls": self.urls, "services": sorted(self.services), "credentials": self.credentials})

    def _backups(
        self, name: str, stack: ResolvedStack, placements: dict[str, Placement], dirs: list[pulumi.Resource]
    ) -> ClusterBackups:
        """Each node backs up the services whose state it holds (floating ones, whose state is on the shared
        filesystem, from the first host), into the one repository, tagged with its own host name."""
        config = stack.config
        child = pulumi.ResourceOptions(parent=self)
        password = repository_password(f"{name}-backup-password", config, child)
        nodes = {}
        for host in config.hosts:
            view = backup_view(stack, placements, host.name)
            if view is None:
                continue
            nodes[host.name] = StackBackups(
                f"{name}-{host.name}-backups",
                StackBackupsArgs(stack=view, depends_on=tuple(dirs), password=password, swarm=True),
                child,
            )
        return ClusterBackups(password=password, nodes=nodes)
