"""One catalog service on a Swarm: the same ResolvedService as on one host, translated to a docker.Service.

Image, limits, reservations, health check, mounts and environment are those of the single-host container
(shared helpers in service.py); what differs is what only a Swarm has: a mode (replicated or global), a
placement (mediastack/plan/placement.py), update and rollback order, a restart policy, generated files as
Swarm configs and passwords as Swarm secrets read from files wherever the image can read them (the variables
each image reads are in its facts, mediastack/plan/secret_files.py, the same as on one host).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from mediastack.catalog.services import NetworkRole
from mediastack.model.config import Gpu, Host
from mediastack.plan.placement import Placement
from mediastack.plan.resolved import ResolvedService
from mediastack.plan.secret_files import container_path, env_line, reads_from_file
from mediastack.single.service import LOG_DRIVER, LOG_OPTS, health_fields, mount_fields, service_image

NANO = 1_000_000_000


def gpu_daemon_settings(host: Host) -> dict[str, object]:
    """A cluster's NVIDIA node: the NVIDIA runtime as dockerd's default, so a task with NVIDIA_VISIBLE_DEVICES
    gets the GPU (Swarm services take no device requests). The NVIDIA Container Toolkit must be installed."""
    if host.gpu is not Gpu.nvidia:
        return {}
    return {
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
    }


def swarm_labels(service: ResolvedService) -> dict[str, str]:
    """Traefik's swarm provider reads the same router labels, with its own name for the network key."""
    return {k.replace("traefik.docker.", "traefik.swarm.", 1): v for k, v in service.labels.items()}


def swarm_command(service: ResolvedService) -> list[str]:
    command = list(service.command)
    if service.name == "traefik":
        # Traefik v3 reads Swarm services (and their labels) with its swarm provider, through the socket proxy.
        command = [c.replace("--providers.docker.", "--providers.swarm.", 1) for c in command]
    if service.name == "cadvisor":
        # The socket proxy runs on a manager: another node's containers are not there. cAdvisor reads each
        # node's cgroups itself (containers by id; see docs/cluster.md).
        command = [c for c in command if not c.startswith(("--docker=", "--docker_only"))]
    return command


def update_order(service: ResolvedService, placement: Placement) -> str:
    """start-first where two copies may overlap; stop-first for node-local state (two writers on one SQLite
    or PostgreSQL directory corrupt it), global services (one per node) and ports published in host mode."""
    if placement.host is not None or placement.is_global or service.spec.published_ports:
        return "stop-first"
    return "start-first"


# Docker refuses a config (or secret) name longer than 64 characters: "invalid name, only 64 [a-zA-Z0-9-_.]
# characters allowed, and the start and end character must be [a-zA-Z0-9]" (seen on the tests' engine).
SWARM_NAME_MAX = 64


def config_name(path: str, content: str) -> str:
    """Swarm configs cannot change: a new content is a new config (the old one goes after the update). The path
    is cut to fit Docker's 64 characters; the content's hash keeps the name unique."""
    digest = hashlib.sha256(f"{path}\0{content}".encode()).hexdigest()[:12]
    room = SWARM_NAME_MAX - len("mediastack-") - len(digest) - 1
    slug = path.replace("/", "-").replace(".", "-")[:room].strip("-")
    return f"mediastack-{slug}-{digest}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class SwarmServiceArgs:
    service: ResolvedService
    placement: Placement
    networks: Mapping[NetworkRole, pulumi.Input[str]]
    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # values, by secret id
    swarm_secrets: dict[str, docker.Secret] = field(default_factory=dict)  # the same, as Swarm secrets
    configs: dict[str, docker.ServiceConfig] = field(default_factory=dict)  # generated files, by container path
    secret_files: dict[str, docker.Secret] = field(default_factory=dict)  # container path -> Swarm secret
    # Who owns the secret files (uid, gid): the user the image runs as once started (resolve.run_as), which for
    # an image that drops privileges itself is not the user it starts as.
    secret_file_owner: tuple[int, int] | None = None
    labels: dict[str, str] = field(default_factory=dict)  # cluster facts for the policies


SecretRef = docker.ServiceTaskSpecContainerSpecSecretArgs


def _env(args: SwarmServiceArgs) -> tuple[pulumi.Input[Mapping[str, str]], list[SecretRef]]:
    """The environment, and the Swarm secrets it names by file; a secret the image reads only from its
    environment makes the whole environment a Pulumi secret."""
    service = args.service
    env: dict[str, str] = dict(service.env)
    files: list[SecretRef] = []
    in_env: dict = {}
    for key, secret in sorted(service.secret_env.items()):
        if not reads_from_file(service.spec, key) or secret.id not in args.swarm_secrets:
            in_env[key] = secret
            continue
        swarm_secret = args.swarm_secrets[secret.id]
        line = env_line(service.spec, key, secret)
        if line is not None:
            env[line[0]] = line[1]
        files.append(
            SecretRef(
                secret_id=swarm_secret.id,
                secret_name=swarm_secret.name,
                file_name=container_path(secret),
                # Readable by the image's own user too: entrypoints read it as root, then again after dropping
                # privileges (the PostgreSQL image does). The file lives only in this task's tmpfs.
                file_mode=0o444,
            )
        )
    if in_env:
        values = {key: args.secrets[secret.id] for key, secret in in_env.items()}
        whole = pulumi.Output.all(**values).apply(lambda v: {**env, **v})
        return pulumi.Output.secret(whole), files
    return env, files


def service_args(args: SwarmServiceArgs, image: pulumi.Input[str]) -> dict:
    """The docker.Service inputs for a resolved service (everything but the resource options)."""
    service = args.service
    spec = service.spec
    resources = service.resources
    placement = args.placement
    env, secret_refs = _env(args)
    health = health_fields(service)
    mounts = [
        docker.ServiceTaskSpecContainerSpecMountArgs(
            **{k: v for k, v in m.items() if k != "tmpfs"},
            tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(**m["tmpfs"])
            if "tmpfs" in m
            else None,
        )
        for m in mount_fields(service)
    ]
    # Swarm services take no devices: the GPU's render nodes are bound in (see docs/cluster.md).
    mounts += [
        docker.ServiceTaskSpecContainerSpecMountArgs(target=d, type="bind", source=d, read_only=False)
        for d in service.devices
    ]
    secret_refs += [
        docker.ServiceTaskSpecContainerSpecSecretArgs(
            secret_id=s.id,
            secret_name=s.name,
            file_name=path,
            file_mode=0o400,
            file_uid=str(args.secret_file_owner[0]) if args.secret_file_owner else _uid(spec.user),
            file_gid=str(args.secret_file_owner[1]) if args.secret_file_owner else _gid(spec.user),
        )
        for path, s in sorted(args.secret_files.items())
    ]
    configs = [
        docker.ServiceTaskSpecContainerSpecConfigArgs(
            config_id=config.id, config_name=config.name, file_name=path, file_mode=0o444
        )
        for path, config in sorted(args.configs.items())
    ]
    labels = {**swarm_labels(service), **args.labels}
    order = update_order(service, placement)
    return dict(
        name=service.name,
        labels=[docker.ServiceLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        mode=docker.ServiceModeArgs(global_=True)
        if placement.is_global
        else docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
        task_spec=docker.ServiceTaskSpecArgs(
            container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                image=image,
                # A container's `command` is the image's CMD: on a service that is `args` (`commands` would
                # replace the entrypoint).
                args=swarm_command(service) or None,
                env=env,
                user=spec.user,
                hostname=service.name,
                healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(**health) if health else None,
                init=not spec.linuxserver,
                read_only=spec.read_only_rootfs,
                stop_grace_period=f"{spec.stop_grace_s}s",
                cap_drops=["ALL"],
                cap_adds=sorted(spec.cap_add) or None,
                groups=list(service.group_adds) or None,
                mounts=mounts,
                configs=configs or None,
                secrets=secret_refs or None,
                labels=[
                    docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v)
                    for k, v in sorted(service.labels.items())
                    if k.startswith("mediastack.")
                ],
            ),
            resources=docker.ServiceTaskSpecResourcesArgs(
                limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                    nano_cpus=round(resources.cpus * NANO), memory_bytes=resources.memory
                ),
                # An NVIDIA GPU reaches the task through its node's default runtime (gpu_daemon_settings) and
                # NVIDIA_VISIBLE_DEVICES, which resolve sets; placement keeps GPU services on GPU nodes.
                reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                    nano_cpus=round(resources.cpu_reservation * NANO), memory_bytes=resources.memory_reservation
                ),
            ),
            restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition="any", delay="5s", window="2m"),
            placement=docker.ServiceTaskSpecPlacementArgs(constraints=list(placement.constraints) or None),
            log_driver=docker.ServiceTaskSpecLogDriverArgs(name=LOG_DRIVER, options=dict(LOG_OPTS)),
            networks_advanceds=[
                docker.ServiceTaskSpecNetworksAdvancedArgs(id=args.networks[role], aliases=[service.name])
                for role in service.networks
            ],
        ),
        endpoint_spec=docker.ServiceEndpointSpecArgs(
            # Host mode: Traefik sees the client's own address (the LAN allow-lists depend on it), which the
            # routing mesh would replace with its own.
            ports=[
                docker.ServiceEndpointSpecPortArgs(target_port=p, published_port=p, protocol="tcp", publish_mode="host")
                for p in spec.published_ports
            ]
        )
        if spec.published_ports
        else None,
        update_config=docker.ServiceUpdateConfigArgs(
            parallelism=1, delay="10s", failure_action="rollback", monitor="60s", max_failure_ratio="0", order=order
        ),
        rollback_config=docker.ServiceRollbackConfigArgs(
            parallelism=1, delay="0s", failure_action="pause", monitor="60s", max_failure_ratio="0", order=order
        ),
    )


def _uid(user: str | None) -> str | None:
    return user.split(":")[0] if user else None


def _gid(user: str | None) -> str | None:
    return user.split(":")[1] if user and ":" in user else None


class MediaSwarmService(pulumi.ComponentResource):
    """A catalog service rendered for a Swarm: its image, pinned by digest, and its docker.Service."""

    image: pulumi.Output[str]

    def __init__(self, name: str, args: SwarmServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:service:MediaSwarmService", name, None, opts)
        # The image and the service wait for what the component waits for (the swarm, the directories).
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)
        # A built image exists on the first manager only, where placement pins its service.
        image_ref = service_image(name, args.service, child)
        swarm_service = docker.Service(f"{name}-service", **service_args(args, image_ref), opts=child)
        self.service = swarm_service
        self.image = image_ref
        self.service_name = swarm_service.name
        self.register_outputs({"image": self.image, "service_name": self.service_name})
