"""The whole media stack: a Docker provider for the host, networks, storage, secrets and services."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from mediastack.catalog.services import NetworkRole, Secret
from mediastack.generate.files import (
    PUBLIC_ROUTES_FILE,
    SMTP_PASSWORD_FILE,
    generate_files,
    generated_host_path,
    traefik_public_routes,
)
from mediastack.host.backup import stack_backups
from mediastack.host.directories import HostStorage, HostStorageArgs, files_script, host_command
from mediastack.host.qos import qos_plan
from mediastack.host.tuning import HostTuning, HostTuningArgs
from mediastack.host.vpn_guard import guard_scripts
from mediastack.model.config import Host, StackConfig
from mediastack.plan.resolve import config_secret
from mediastack.plan.resolved import ResolvedService, ResolvedStack
from mediastack.plan.secret_files import as_files, host_dir
from mediastack.quoting import sh
from mediastack.single.network import StackNetwork, StackNetworkArgs
from mediastack.single.service import MediaService, MediaServiceArgs
from mediastack.wiring.provider import PipelineWiring, PipelineWiringArgs


def docker_endpoint(host: Host) -> str:
    if host.docker_host:
        return host.docker_host
    if host.address in ("localhost", "127.0.0.1", "::1"):
        return "unix:///var/run/docker.sock"
    return f"ssh://{host.ssh_user}@{host.address}"


def _secret_resource(
    name: str, secret: Secret, child: pulumi.ResourceOptions, config: StackConfig
) -> pulumi.Output[str]:
    if secret.kind == "config":
        return pulumi.Output.secret(config_secret(config, secret.id) or "")
    if secret.kind == "api_key":
        # The *arr apps' own format: 32 lower-case hex characters.
        key = random.RandomId(
            name,
            byte_length=16,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(additional_secret_outputs=["hex"])),
        )
        return pulumi.Output.secret(key.hex)
    password = random.RandomPassword(name, length=secret.length, special=False, opts=child)
    # The provider marks `result` secret; wrapping it here keeps it secret under any engine, mocks included.
    return pulumi.Output.secret(password.result)


def generated_credentials(
    stack: ResolvedStack, secrets: dict[str, pulumi.Output[str]]
) -> pulumi.Output[dict[str, str]]:
    """The values the stack generated (not those the user set), by id, as one secret: what a user needs to log in
    (`pulumi stack output credentials --show-secrets`)."""
    generated = {sid: value for sid, value in secrets.items() if stack.secrets[sid].kind != "config"}
    everything: pulumi.Output[dict[str, str]] = pulumi.Output.all(**generated)
    return everything.apply(pulumi.Output.secret)


def secret_files_digest(
    service: ResolvedService, key: pulumi.Output[str], secrets: dict[str, pulumi.Output[str]]
) -> pulumi.Output[str]:
    """An HMAC of the secrets a container reads from files, under a key of the stack's own: it changes with any of
    them (so the container is replaced and reads the new file) and tells nothing about them without the key, which
    only the stack's state holds. Not a secret itself, so the labels stay readable to the policies."""
    ids = sorted({secret.id for secret in as_files(service).values()})

    def mac(values: list[str]) -> str:
        text = "\0".join(f"{i}={v}" for i, v in zip(ids, values[1:], strict=True))
        return hmac.new(bytes.fromhex(values[0]), text.encode(), hashlib.sha256).hexdigest()[:16]

    found: pulumi.Output[str] = pulumi.Output.all(key, *(secrets[i] for i in ids)).apply(mac)
    return pulumi.Output.unsecret(found)


@dataclass(frozen=True)
class MediaStackArgs:
    stack: ResolvedStack


class MediaStack(pulumi.ComponentResource):
    """Everything one stack config describes, on its host."""

    def __init__(self, name: str, args: MediaStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:stack:MediaStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = args.stack
        host = stack.config.host

        provider = docker.Provider(f"{name}-{host.name}-docker", host=docker_endpoint(host), opts=child)
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)

        self.networks = {
            role: StackNetwork(f"{name}-{role.value}", StackNetworkArgs(role=role, stack=stack.stack), on_host)
            for role in stack.networks
        }
        network_names = {role: net.name for role, net in self.networks.items()}

        self.secrets = {
            sid: _secret_resource(f"{name}-{sid}", secret, child, stack.config) for sid, secret in stack.secrets.items()
        }

        storage = HostStorage(
            f"{name}-{host.name}-storage", HostStorageArgs(stack=stack, host=host, secrets=self.secrets), child
        )
        downloads = self.networks.get(NetworkRole.downloads)
        guard = guard_scripts(stack.config) if "gluetun" in stack.enabled else {}
        self.tuning = HostTuning(
            f"{name}-{host.name}-tuning",
            HostTuningArgs(
                host=host,
                reserve_for_host=stack.config.reserve_for_host,
                qos=qos_plan(stack.config) if downloads else None,
                downloads_network=downloads,
                downloads_network_id=downloads.network_id if downloads else None,
                vpn_guard=(guard["vpn-guard-create.sh"], guard["vpn-guard-delete.sh"]) if guard else None,
            ),
            child,
        )
        files = generate_files(stack)

        smtp = stack.config.alerting.email
        secret_files = {
            "alertmanager": {SMTP_PASSWORD_FILE: pulumi.Output.secret(smtp.password)} if smtp and smtp.password else {}
        }

        # Host-network services listen on the monitoring bridge's address; whoever is on that network finds them
        # by name through an /etc/hosts entry.
        monitoring = self.networks.get(NetworkRole.monitoring)
        on_host_network = [s.name for s in stack.services if s.network_mode == "host"]
        host_addresses = {n: monitoring.gateway for n in on_host_network} if monitoring else {}

        digest_key = None
        if any(as_files(s) for s in stack.services):
            digest_key = random.RandomId(
                f"{name}-secret-files-key",
                byte_length=32,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(additional_secret_outputs=["hex"])),
            ).hex

        self.services: dict[str, MediaService] = {}
        for service in stack.services:  # catalog order puts what others require first
            needs = [*service.spec.requires]
            vpn = None
            if service.network_mode and service.network_mode.startswith("container:"):  # the VPN container first
                vpn = service.network_mode.split(":", 1)[1]
                needs.append(vpn)
            depends = [storage, *(self.services[r] for r in needs if r in self.services)]
            self.services[service.name] = MediaService(
                f"{name}-{service.name}",
                MediaServiceArgs(
                    service=service,
                    networks=network_names,
                    secrets=self.secrets,
                    files=files,
                    secret_files=secret_files.get(service.name, {}),
                    host_addresses=host_addresses if NetworkRole.monitoring in service.networks else {},
                    listen_on=monitoring.gateway if monitoring and service.network_mode == "host" else None,
                    namespace_of=self.services[vpn].container if vpn else None,
                    secrets_dir=host_dir(stack.config, service.spec),
                    secret_files_digest=secret_files_digest(service, digest_key, self.secrets)
                    if digest_key is not None and as_files(service)
                    else None,
                ),
                pulumi.ResourceOptions(parent=self, providers={"docker": provider}, depends_on=depends),
            )

        if stack.config.wiring.enabled:
            wiring = PipelineWiring(
                f"{name}-wiring",
                PipelineWiringArgs(
                    stack=stack,
                    secrets=self.secrets,
                    services={n: s.container for n, s in self.services.items()},
                ),
                child,
            )
            public = traefik_public_routes(stack)
            if public is not None:
                # The internet reaches a UI only once its login exists: Traefik reads this file from the directory
                # it binds, after the wiring made the logins (until then the routes answer the LAN only).
                text, guarded = public
                path = generated_host_path(stack.config, stack.get("traefik").spec, PUBLIC_ROUTES_FILE)
                host_command(
                    f"{name}-{host.name}-public-routes",
                    host,
                    files_script({path: text}),
                    f'rm -f "${{ROOT:-}}"{sh(path)}',
                    pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[
                            storage,
                            *(wiring.logins.get(s) or self.services[s] for s in guarded),
                        ],
                    ),
                )

        self.credentials = generated_credentials(stack, self.secrets)
        # Every service with state, from the catalog (docs/backups.md); None without a repository.
        self.backups = stack_backups(f"{name}-{host.name}-backups", stack, child, depends_on=[storage])

        self.urls = {s.name: f"https://{s.web_host}" for s in stack.services if s.web_host}
        self.register_outputs({"urls": self.urls, "services": sorted(self.services), "credentials": self.credentials})
