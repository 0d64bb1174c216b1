"""One catalog service on one host: its pinned image and its container."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from mediastack.catalog.services import NetworkRole
from mediastack.generate.files import CONTAINER_PATHS, generated_dir
from mediastack.plan.resolved import ResolvedService
from mediastack.plan.secret_files import SECRETS_DIR, as_files, file_env, in_environment
from mediastack_vocabulary import Label

MIB = 1024**2
HEALTH_INTERVAL_S = 30
HEALTH_TIMEOUT_S = 10
HEALTH_INTERVAL = f"{HEALTH_INTERVAL_S}s"
HEALTH_TIMEOUT = f"{HEALTH_TIMEOUT_S}s"
HEALTH_RETRIES = 3
# `local` compresses and rotates; bounded so a chatty container cannot fill the disk.
LOG_DRIVER = "local"
LOG_OPTS = {"max-size": "10m", "max-file": "5"}
GATEWAY_PRIORITY = 100


def mebibytes(size: int) -> int:
    """Docker's provider takes memory in MiB."""
    return max(size // MIB, 6)


@dataclass
class MediaServiceArgs:
    service: ResolvedService
    networks: Mapping[NetworkRole, pulumi.Input[str]]
    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # generated files by render path
    secret_files: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # container path -> secret content
    # Services in the host's network namespace, by name -> the monitoring bridge's address they listen on: an
    # /etc/hosts entry, so `node-exporter:9100` still names it from the monitoring network.
    host_addresses: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    listen_on: pulumi.Input[str] | None = None  # a host-network service: the monitoring bridge's address
    # A download client behind the VPN: the VPN's container, whose network namespace it joins (network_mode).
    namespace_of: docker.Container | None = None
    # A keyed digest of the secrets it reads from files: a new value is a new container (it reads them at start).
    secret_files_digest: pulumi.Input[str] | None = None
    secrets_dir: str | None = None  # the host directory of its secret files (mediastack/plan/secret_files.py)


def container_env(service: ResolvedService, secrets: dict[str, pulumi.Output[str]]) -> pulumi.Input[list[str]]:
    """KEY=value lines. A secret the image reads from a file is named by its file's path (anyone who can inspect
    the container reads its environment); a secret it can only read from its environment stays an Output, so the
    whole list is a Pulumi secret then."""
    plain = sorted([f"{k}={v}" for k, v in service.env.items()] + file_env(service))
    in_env = in_environment(service)
    if not in_env:
        return plain
    secret_lines = [pulumi.Output.concat(key, "=", secrets[secret.id]) for key, secret in in_env.items()]
    return pulumi.Output.all(*secret_lines).apply(lambda lines: sorted(plain + list(lines)))


def health_fields(service: ResolvedService) -> dict | None:
    """The health check, the same on a container and a Swarm service."""
    if service.health is None:
        return None
    return dict(
        tests=list(service.health.test),
        interval=HEALTH_INTERVAL,
        timeout=HEALTH_TIMEOUT,
        start_period=f"{service.health.start_period_s}s",
        retries=HEALTH_RETRIES,
    )


def mount_fields(service: ResolvedService) -> list[dict]:
    """Bind and tmpfs mounts as provider fields (`tmpfs` holds the tmpfs options), for either target."""
    mounts: list[dict] = []
    for m in service.mounts:
        if m.type == "tmpfs":
            mode = 0o1777 if m.target == "/tmp" else 0o755
            mounts.append(dict(target=m.target, type="tmpfs", tmpfs={"size_bytes": m.size, "mode": mode}))
        else:
            mounts.append(dict(target=m.target, type="bind", source=m.source, read_only=m.read_only))
    return mounts


def files_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path, content in sorted(files.items()):
        digest.update(f"{path}\0{content}\0".encode())
    return digest.hexdigest()[:16]


def wait_timeout(service: ResolvedService) -> int:
    """Seconds pulumi-docker waits for a healthy container: the start period, then every retry's interval and
    timeout, and a margin."""
    assert service.health is not None
    return service.health.start_period_s + HEALTH_RETRIES * (HEALTH_INTERVAL_S + HEALTH_TIMEOUT_S) + 30


LISTEN_FLAG = "--web.listen-address"  # exporter-toolkit's, repeatable (node_exporter v1.10.2 --help)


def host_network_command(
    service: ResolvedService, listen_on: pulumi.Input[str] | None
) -> pulumi.Input[list[str]] | None:
    """In the host's namespace an exporter would listen on every host interface, the LAN's too: only on loopback
    (its health check) and on the monitoring bridge's address (Prometheus, blackbox), once the bridge has one."""
    command = list(service.command)
    metrics = service.spec.metrics
    if service.network_mode != "host" or metrics is None:
        return command or None
    command.append(f"{LISTEN_FLAG}=127.0.0.1:{metrics.port}")
    if listen_on is None:
        return command
    port = metrics.port
    return pulumi.Output.from_input(listen_on).apply(
        lambda address: [*command, f"{LISTEN_FLAG}={address}:{port}"] if address else command
    )


def host_entries(addresses: Mapping[str, pulumi.Input[str]]) -> pulumi.Input[list[dict[str, str]]] | None:
    """/etc/hosts entries for the host-network services, by the name the stack's files use for them."""
    if not addresses:
        return None
    found: pulumi.Output[dict[str, str]] = pulumi.Output.all(**addresses)
    return found.apply(lambda by_name: [{"host": n, "ip": ip} for n, ip in sorted(by_name.items()) if ip])


def binds_files(service: ResolvedService) -> bool:
    """Resolve gave it its generated files as a read-only bind of their directory (instead of uploads)."""
    spec = service.spec
    if not spec.uploads:
        return False
    where = generated_dir(spec)
    return any(m.type == "bind" and m.read_only and m.target == where for m in service.mounts)


def namespace_mode(args: MediaServiceArgs) -> pulumi.Input[str] | None:
    """`container:<id>` of the VPN container for a client that shares its namespace: Docker stores the id it
    resolves a name to, and the provider reads that back into its state (terraform-provider-docker v4.5.0
    internal/provider/resource_docker_container_funcs.go `resourceDockerContainerRead`; `network_mode` is ForceNew
    in resource_docker_container.go). With the id as the input, a replaced VPN container (a new id) replaces its
    clients, in its new namespace, and otherwise the input equals that state; the name never would."""
    if args.namespace_of is None:
        return args.service.network_mode
    return pulumi.Output.concat("container:", args.namespace_of.id)


def container_args(args: MediaServiceArgs, image: pulumi.Input[str]) -> dict:
    """The docker.Container inputs for a resolved service (everything but the resource options)."""
    service = args.service
    spec = service.spec
    resources = service.resources
    fields = health_fields(service)
    health = docker.ContainerHealthcheckArgs(**fields) if fields else None
    mounts = [
        docker.ContainerMountArgs(
            **{k: v for k, v in m.items() if k != "tmpfs"},
            tmpfs_options=docker.ContainerMountTmpfsOptionsArgs(**m["tmpfs"]) if "tmpfs" in m else None,
        )
        for m in mount_fields(service)
    ]
    if args.secrets_dir and as_files(service):
        # Its secret files, written by the host step readable by the image's user only.
        mounts.append(
            docker.ContainerMountArgs(target=SECRETS_DIR, type="bind", source=args.secrets_dir, read_only=True)
        )
    bound = binds_files(service)
    labels: dict[str, pulumi.Input[str]] = dict(service.labels)
    if args.secret_files_digest is not None and as_files(service):
        labels[Label.secret_files] = args.secret_files_digest
    if bound:
        # The files reach it through a read-only bind the host step rewrites: a new content is a new container
        # (which reads it at start), named by this digest.
        labels[Label.files] = files_digest({path: args.files[path] for path in spec.uploads})
    return dict(
        name=service.name,
        hostname=None if service.network_mode else service.name,  # a shared namespace has the VPN's name
        network_mode=namespace_mode(args),
        image=image,
        command=host_network_command(service, args.listen_on),
        envs=container_env(service, args.secrets),
        user=spec.user,
        restart="unless-stopped",
        cpus=f"{resources.cpus:g}",
        # Docker has no CPU reservation for plain containers: shares weight CPU under contention.
        cpu_shares=max(2, round(1024 * resources.cpu_reservation)),
        memory=mebibytes(resources.memory),
        memory_reservation=mebibytes(resources.memory_reservation),
        # memory_swap == memory: no swap at all (mem_swappiness does nothing on cgroup v2).
        memory_swap=mebibytes(service.swap_limit) if service.swap_limit is not None else None,
        healthcheck=health,
        log_driver=LOG_DRIVER,
        log_opts=dict(LOG_OPTS),
        security_opts=["no-new-privileges:true"],
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(spec.cap_add) or None),
        read_only=spec.read_only_rootfs,
        # s6-overlay must be PID 1 in linuxserver images; every other image gets tini to reap zombies.
        init=not spec.linuxserver,
        destroy_grace_seconds=spec.stop_grace_s,
        mounts=mounts,
        devices=[docker.ContainerDeviceArgs(host_path=d, container_path=d, permissions="rwm") for d in service.devices]
        or None,
        device_requests=[
            docker.ContainerDeviceRequestArgs(
                driver="nvidia", count=-1, capabilities=["gpu", "compute", "video", "utility"]
            )
        ]
        if service.gpu_request
        else None,
        group_adds=list(service.group_adds) or None,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(
                name=args.networks[role],
                aliases=[service.name, *service.aliases],
                # A download client's way out is the downloads network, whose bridge the host shapes (Docker 28+).
                gw_priority=GATEWAY_PRIORITY
                if role == NetworkRole.downloads and spec.role in ("download_client", "vpn")
                else None,
            )
            for role in service.networks
        ],
        hosts=host_entries(args.host_addresses),
        ports=[docker.ContainerPortArgs(internal=p, external=p, protocol="tcp") for p in spec.published_ports] or None,
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        uploads=None
        if bound
        else [
            *(
                docker.ContainerUploadArgs(file=CONTAINER_PATHS[path], content=args.files[path])
                for path in spec.uploads
            ),
            *(docker.ContainerUploadArgs(file=path, content=content) for path, content in args.secret_files.items()),
        ]
        or None,
        # Dependents start once this one is healthy (pulumi-docker waits for the health check).
        wait=service.wait,
        wait_timeout=wait_timeout(service) if service.wait else None,
    )


def service_image(name: str, service: ResolvedService, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The image reference the service runs: built on the Docker host from the repository (no registry needed)
    and tagged with the pinned version, or pulled first and pinned by the digest the pull found (on a Swarm,
    every node then runs exactly that image); kept locally, so a rollback is instant."""
    if service.spec.build:
        built = docker.Image(
            f"{name}-image",
            image_name=service.image,
            build=docker.DockerBuildArgs(context=service.spec.build),
            skip_push=True,
            opts=child,
        )
        return built.image_name
    pulled = docker.RemoteImage(f"{name}-image", name=service.image, keep_locally=True, opts=child)
    return pulled.repo_digest


class MediaService(pulumi.ComponentResource):
    """A catalog service rendered for a single Docker host: its image, pulled first, and its container."""

    container_name: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(self, name: str, args: MediaServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:service:MediaService", name, None, opts)
        # A component's depends_on does not reach its children: the container waits for the same (the host's
        # directories and generated files, the services it needs) itself.
        after = opts.depends_on if opts else None
        child = pulumi.ResourceOptions(parent=self)
        image_ref = service_image(name, args.service, child)
        container = docker.Container(
            f"{name}-container",
            **container_args(args, image_ref),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=after),
        )
        self.container = container
        self.container_name = container.name
        self.image = image_ref
        self.register_outputs({"container_name": self.container_name, "image": self.image})
