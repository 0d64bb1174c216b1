"""A Docker network for one role (frontend, backend, database, monitoring, socket)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from mediastack.catalog.services import NetworkRole
from mediastack.model.config import DOWNLOADS_BRIDGE
from mediastack.plan.resolved import is_internal, network_name
from mediastack_vocabulary import Label


@dataclass(frozen=True)
class StackNetworkArgs:
    role: NetworkRole
    stack: str
    overlay: bool = False  # a Swarm overlay network (cluster stacks)
    encrypted: bool = False  # overlay only: IPsec between hosts, for traffic that crosses them


class StackNetwork(pulumi.ComponentResource):
    """A user-defined bridge (one host) or overlay (Swarm) network; internal (no route out) for databases,
    monitoring and the socket."""

    name: pulumi.Output[str]

    def __init__(self, name: str, args: StackNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:network:StackNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = args.role
        self.internal = is_internal(args.role)
        options: dict[str, str] | None = None
        if args.overlay:
            options = {"encrypted": "true"} if args.encrypted else None
        elif args.role == NetworkRole.downloads:
            # A fixed bridge name, so the host's traffic shaping (mediastack/host/qos.py) finds the download clients.
            options = {"com.docker.network.bridge.name": DOWNLOADS_BRIDGE}
        network = docker.Network(
            f"{name}-network",
            name=network_name(args.role),
            driver="overlay" if args.overlay else "bridge",
            internal=self.internal,
            # Attachable on a Swarm, so a one-off container (a restore, a debug shell) can join the services.
            attachable=args.overlay,
            options=options,
            labels=[
                docker.NetworkLabelArgs(label=Label.stack, value=args.stack),
                docker.NetworkLabelArgs(label=Label.network, value=args.role.value),
            ],
            opts=child,
        )
        self.name = network.name
        self.network_id = network.id
        # The bridge's own address on the host (an internal bridge has one too: moby commit c761353, "Make
        # 'internal' bridge networks accessible from host"): where a host-network service can listen for it.
        self.gateway: pulumi.Output[str] = network.ipam_configs.apply(
            lambda configs: next((c.gateway for c in configs or [] if c.gateway), "")
        )
        self.register_outputs({"name": self.name})
