"""Each component on its own, under the shared mocks (preview=False, outputs awaited)."""

from __future__ import annotations

import pulumi
import pytest

from conftest import raw_config
from mediastack.catalog.services import NetworkRole
from mediastack.host.directories import HostStorage, HostStorageArgs
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack.single.network import StackNetwork, StackNetworkArgs
from mediastack.single.service import MediaService, MediaServiceArgs
from mediastack.single.stack import MediaStack, MediaStackArgs, docker_endpoint


def resolved(stack: str = "prod"):
    return resolve(parse_stack_config(raw_config(stack), stack), stack)


def by_type(records, suffix: str):
    return [r for r in records if r.type.endswith(suffix)]


@pytest.mark.parametrize(
    ("role", "internal"),
    [
        (NetworkRole.frontend, False),
        (NetworkRole.backend, False),
        (NetworkRole.database, True),
        (NetworkRole.monitoring, True),
        (NetworkRole.socket, True),
    ],
)
def test_stack_network(mocks, role: NetworkRole, internal: bool) -> None:
    @pulumi.runtime.test
    def check():
        net = StackNetwork(f"t-{role.value}", StackNetworkArgs(role=role, stack="test"))

        def verify(name: str) -> None:
            assert name == f"mediastack-{role.value}"
            (network,) = by_type(mocks, ":Network")
            assert network.inputs["internal"] is internal
            assert network.parent.endswith(f"::t-{role.value}")
            assert network.name == f"t-{role.value}-network"

        return net.name.apply(verify)

    check()


def test_media_service_renders_one_image_and_one_container(mocks) -> None:
    stack = resolved()
    jellyfin = stack.get("jellyfin")

    @pulumi.runtime.test
    def check():
        networks = {role: f"mediastack-{role.value}" for role in NetworkRole}
        service = MediaService("t-jellyfin", MediaServiceArgs(service=jellyfin, networks=networks))

        def verify(args) -> None:
            name, image = args
            assert name == "jellyfin"
            assert image.startswith("lscr.io/linuxserver/jellyfin@sha256:")
            (remote,) = by_type(mocks, ":RemoteImage")
            (container,) = by_type(mocks, ":Container")
            assert remote.inputs["name"] == "lscr.io/linuxserver/jellyfin:10.11.2"
            assert remote.inputs["keepLocally"] is True
            assert container.inputs["image"] == image
            assert container.inputs["memorySwap"] == container.inputs["memory"] == 8192
            assert container.inputs["cpuShares"] == 1024
            assert container.inputs["init"] is False  # s6-overlay is PID 1 in linuxserver images

        return pulumi.Output.all(service.container_name, service.image).apply(verify)

    check()


def test_service_with_secrets_reads_them_from_a_file_not_its_env(mocks) -> None:
    stack = resolved()
    sonarr = stack.get("sonarr")
    value = "0123456789abcdef0123456789abcdef"

    @pulumi.runtime.test
    def check():
        key = pulumi.Output.secret(value)
        networks = {role: f"mediastack-{role.value}" for role in NetworkRole}
        service = MediaService(
            "t-sonarr",
            MediaServiceArgs(
                service=sonarr, networks=networks, secrets={"sonarr-api-key": key}, secrets_dir="/srv/s/sonarr"
            ),
        )

        def verify(_: str) -> None:
            (container,) = by_type(mocks, ":Container")
            envs = container.inputs["envs"]
            # linuxserver's FILE__<VAR>: the environment names the file; the value is nowhere in it.
            assert "FILE__SONARR__AUTH__APIKEY=/run/secrets/sonarr-api-key" in envs
            assert not any(value in line or "[secret]" in line for line in envs), envs
            mount = [m for m in container.inputs["mounts"] if m["target"] == "/run/secrets"]
            assert mount == [{"target": "/run/secrets", "type": "bind", "source": "/srv/s/sonarr", "readOnly": True}]

        return service.container_name.apply(verify)

    check()


@pytest.mark.parametrize(
    ("address", "kind"), [("localhost", "command:local:Command"), ("nas.home.arpa", "command:remote:Command")]
)
def test_host_storage_runs_where_the_host_is(mocks, address: str, kind: str) -> None:
    cfg = raw_config("prod")
    cfg["hosts"][0]["address"] = address
    stack = resolve(parse_stack_config(cfg, "prod"), "prod")

    @pulumi.runtime.test
    def check():
        secrets = {sid: pulumi.Output.secret(f"value of {sid}") for sid in stack.secrets}
        storage = HostStorage("t-storage", HostStorageArgs(stack=stack, host=stack.config.host, secrets=secrets))

        def verify(_: str) -> None:
            (command,) = [r for r in mocks if r.type.startswith("command:") and r.name == "t-storage-dirs"]
            assert command.type == kind
            assert command.inputs["create"].startswith("#!/bin/sh")
            assert "rmdir" in command.inputs["delete"]
            assert command.inputs["triggers"] == [command.inputs["create"], command.inputs["delete"]]

        return storage.stdout.apply(verify)

    check()


def test_media_stack_wires_provider_and_networks(mocks) -> None:
    stack = resolved("dev")

    @pulumi.runtime.test
    def check():
        media = MediaStack("t", MediaStackArgs(stack=stack))

        def verify(_) -> None:
            (provider,) = by_type(mocks, "providers:docker")
            assert provider.inputs["host"] == "unix:///var/run/docker.sock"
            services = by_type(mocks, ":MediaService")
            assert sorted(s.name for s in services) == sorted(f"t-{s.name}" for s in stack.services)
            containers = by_type(mocks, ":Container")
            assert all(c.provider.startswith(provider.urn) for c in containers)
            networks = {r.inputs["name"] for r in by_type(mocks, ":Network")}
            assert networks == {f"mediastack-{r.value}" for r in stack.networks}

        def verify_credentials(args: list) -> None:
            secret, values = args
            assert secret, "the credentials output must be a Pulumi secret"
            assert set(values) == {"qbittorrent-password", "sabnzbd-api-key", "sonarr-api-key", "radarr-api-key",
                                   "prowlarr-api-key", "sabnzbd-password", "sonarr-admin-password",
                                   "radarr-admin-password", "prowlarr-admin-password",
                                   "jellyfin-admin-password"}  # fmt: skip
            assert len(values["qbittorrent-password"]) == 24 and len(values["sonarr-api-key"]) == 32

        return pulumi.Output.all(
            pulumi.Output.all(*(s.container_name for s in media.services.values())).apply(verify),
            pulumi.Output.all(media.credentials.is_secret(), media.credentials).apply(verify_credentials),
        )

    check()


def test_docker_endpoint() -> None:
    stack = resolved()
    assert docker_endpoint(stack.config.host) == "ssh://deploy@nas.home.arpa"
    assert docker_endpoint(resolved("dev").config.host) == "unix:///var/run/docker.sock"


def test_a_host_network_exporter_listens_on_loopback_and_the_monitoring_bridge_only(mocks) -> None:
    """Not on every host interface (the LAN's); Prometheus and blackbox find it by name at the bridge's address."""
    from mediastack.single.service import container_args, host_entries

    node = resolved().get("node-exporter")
    assert node.network_mode == "host" and node.networks == ()

    @pulumi.runtime.test
    def check():
        args = MediaServiceArgs(service=node, networks={}, listen_on=pulumi.Output.from_input("172.20.0.1"))
        command = container_args(args, "prom/node-exporter:v1.10.2")["command"]
        entries = host_entries({"node-exporter": pulumi.Output.from_input("172.20.0.1")})

        def verify(values: list) -> None:
            argv, hosts = values
            listens = [a for a in argv if a.startswith("--web.listen-address")]
            assert listens == ["--web.listen-address=127.0.0.1:9100", "--web.listen-address=172.20.0.1:9100"]
            assert hosts == [{"host": "node-exporter", "ip": "172.20.0.1"}]

        return pulumi.Output.all(command, entries).apply(verify)

    check()
    # Before the bridge has an address (a preview), loopback only: never every interface.
    unknown = container_args(MediaServiceArgs(service=node, networks={}), "x")["command"]
    assert [a for a in unknown if a.startswith("--web.listen-address")] == ["--web.listen-address=127.0.0.1:9100"]
