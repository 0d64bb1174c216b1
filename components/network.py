"""A Docker network for one role (frontend, backend, database, monitoring, socket)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from .catalog import NetworkRole
from .config import DOWNLOADS_BRIDGE
from .resolve import is_internal, network_name


@dataclass(frozen=True)
class StackNetworkArgs:
    role: NetworkRole
    stack: str


class StackNetwork(pulumi.ComponentResource):
    """A user-defined bridge network; internal (no route out) for databases, monitoring and the socket."""

    name: pulumi.Output[str]

    def __init__(self, name: str, args: StackNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:network:StackNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = args.role
        self.internal = is_internal(args.role)
        network = docker.Network(
            f"{name}-network",
            name=network_name(args.role),
            driver="bridge",
            internal=self.internal,
            attachable=False,
            # A fixed bridge name, so the host's traffic shaping (components/qos.py) finds the download clients.
            options={"com.docker.network.bridge.name": DOWNLOADS_BRIDGE}
            if args.role == NetworkRole.downloads
            else None,
            labels=[
                docker.NetworkLabelArgs(label="mediastack.stack", value=args.stack),
                docker.NetworkLabelArgs(label="mediastack.network", value=args.role.value),
            ],
            opts=child,
        )
        self.name = network.name
        self.network_id = network.id
        self.register_outputs({"name": self.name})
