"""Bad stack config stops the program with one clear message per problem: key path, value, fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conftest import raw_config, refused_config
from mediastack.plan.loading import ConfigError, parse_stack_config


def prod() -> dict[str, Any]:
    return raw_config("prod")


def with_host(**changes: Any) -> dict[str, Any]:
    cfg = prod()
    cfg["hosts"][0].update(changes)
    return cfg


def with_(key: str, value: Any) -> dict[str, Any]:
    cfg = prod()
    cfg[key] = value
    return cfg


def with_service(name: str, **override: Any) -> dict[str, Any]:
    cfg = prod()
    cfg.setdefault("services", {})[name] = override
    return cfg


def without(key: str) -> dict[str, Any]:
    cfg = prod()
    del cfg[key]
    return cfg


CASES = [
    # (config, key path, words the message must contain)
    (without("domain"), "mediastack:domain", ["(missing)", "required"]),
    (with_("domain", "localhost"), "mediastack:domain", ["'localhost'", "DNS name"]),
    (with_("hosts", []), "mediastack:hosts", ["at least 1"]),
    (with_host(memory="8GB"), "mediastack:hosts[0].memory", ["'8GB'", "write 8GiB"]),
    (with_host(memory="lots"), "mediastack:hosts[0].memory", ["'lots'", "512MiB"]),
    (with_host(memory="256MiB"), "mediastack:hosts[0].memory", ["at least 512MiB"]),
    (with_host(cpus=0), "mediastack:hosts[0].cpus", ["= 0", "greater than or equal to 1"]),
    (with_host(gpu="radeon"), "mediastack:hosts[0].gpu", ["'radeon'", "'none', 'intel', 'amd' or 'nvidia'"]),
    (with_host(gpu="amd", render_gid=None), "mediastack:hosts[0]", ["render_gid is required", "getent group render"]),
    (with_host(storage="nvme"), "mediastack:hosts[0].storage", ["'nvme'", "'ssd' or 'hdd'"]),
    (with_host(name="NAS_1"), "mediastack:hosts[0].name", ["'NAS_1'", "lower case"]),
    (with_host(address="not an address"), "mediastack:hosts[0].address", ["IP address or a DNS name"]),
    (with_host(ram="32GiB"), "mediastack:hosts[0].ram", ["unknown key", "memory"]),
    (
        with_("hosts", [prod()["hosts"][0], {**prod()["hosts"][0], "name": "nas2"}]),
        "mediastack:storage",
        ["2 hosts runs on a Swarm", "needs shared storage"],
    ),
    (
        with_host(link={"interface": "enp3s0", "up": "5MB/s", "down": "500mbit"}),
        "mediastack:hosts[0].link.up",
        ["'5MB/s'", "bits, not bytes", "40mbit"],
    ),
    (
        with_host(link={"interface": "eth0; reboot", "up": "40mbit", "down": "500mbit"}),
        "mediastack:hosts[0].link.interface",
        ["network interface name"],
    ),
    (
        with_host(link={"interface": "eth0", "up": "2gbit", "down": "2gbit"}),
        "mediastack:hosts[0].link",
        ["above nic_speed (1gbit)"],
    ),
    (
        with_("downloads", {"max_up": "40mbit"}),
        "mediastack:downloads.max_up",
        ["'40mbit'", "below the line rate", "40mbit", "at most 38mbit"],
    ),
    (
        with_("downloads", {"vpn": {"provider": "mullvad"}}),
        "mediastack:downloads.vpn",
        ["wireguard_private_key", "pulumi config set --secret"],
    ),
    (
        with_("downloads", {"vpn": {"provider": "Mullvad VPN!", "wireguard_private_key": "k"}}),
        "mediastack:downloads.vpn.provider",
        ["gluetun provider name"],
    ),
    (
        with_("wiring", {"urls": {"grafana": "http://10.0.0.5:3000"}}),
        "mediastack:wiring.urls",
        ["'grafana' is not wired", "sonarr, radarr, prowlarr"],
    ),
    (
        with_("wiring", {"urls": {"sonarr": "sonarr.lan:8989"}}),
        "mediastack:wiring.urls",
        ["'sonarr.lan:8989' is not a URL", "https://192.168.1.10:8989"],
    ),
    (with_("downloads", {"max_down": "fast"}), "mediastack:downloads.max_down", ["'fast'", "rate in bits"]),
    (with_("paths", {"data_root": "srv/data"}), "mediastack:paths.data_root", ["absolute path"]),
    (
        with_("paths", {"data_root": "/srv/media", "config_root": "/srv/media/config"}),
        "mediastack:paths",
        ["must not overlap"],
    ),
    (with_("identity", {"umask": "0999"}), "mediastack:identity.umask", ["three octal digits"]),
    (with_("identity", {"tz": "Berlin"}), "mediastack:identity.tz", ["'Berlin'", "IANA time zone"]),
    (with_("identity", {"puid": 0}), "mediastack:identity.puid", ["greater than or equal to 1"]),
    (
        with_("tiers", {"critical": {"cpus": 4, "memory": "1GiB", "cpu_reservation": 1, "memory_reservation": "2GiB"}}),
        "mediastack:tiers.critical",
        ["above the memory limit", "lower it"],
    ),
    (
        with_("tiers", {"utility": {"cpus": 0.5, "memory": "512MiB"}}),
        "mediastack:tiers.utility.cpu_reservation",
        ["required"],
    ),
    (with_("bundles", ["media", "torrents"]), "mediastack:bundles[1]", ["unknown bundle", "downloads"]),
    (with_service("sonar", enabled=True), "mediastack:services.sonar", ["did you mean 'sonarr'"]),
    (with_service("jellyfin", image_tag="latest"), "mediastack:services.jellyfin.image_tag", ["not `latest`"]),
    (
        with_service("jellyfin", image_digest="sha256:abc"),
        "mediastack:services.jellyfin.image_digest",
        ["64 lower-case hex"],
    ),
    (with_service("traefik", enabled=False), "mediastack:services.traefik.enabled", ["core", "cannot be disabled"]),
    (
        with_service("immich-postgres", enabled=False),
        "mediastack:services.immich-postgres.enabled",
        ["immich-server needs immich-postgres"],
    ),
    (
        with_service("sonarr", resources={"memory": "1GiB", "memory_reservation": "1.5GiB"}),
        "mediastack:services.sonarr.resources.memory_reservation",
        ["above sonarr's memory limit 1GiB"],
    ),
    (
        with_service("jellyfin", resources={"cpus": 16}),
        "mediastack:services.jellyfin.resources.cpus",
        ["more than host nas has (8)"],
    ),
    (
        with_service("sonarr", env={"SONARR__AUTH__APIKEY": "abc"}),
        "mediastack:services.sonarr.env.SONARR__AUTH__APIKEY",
        ["generated secret"],
    ),
    (with_service("sonarr", env={"BAD-NAME": "x"}), "mediastack:services.sonarr.env", ["not an environment variable"]),
    (
        with_service("radarr", mounts=[{"source": "/var/run/docker.sock", "target": "/sock"}]),
        "mediastack:services.radarr.mounts[0].source",
        ["only the socket proxy"],
    ),
    (
        with_service("radarr", mounts=[{"source": "/mnt/x", "target": "/data"}]),
        "mediastack:services.radarr.mounts[0].target",
        ["already used"],
    ),
    (
        with_service("jellyfin", tier="gold"),
        "mediastack:services.jellyfin.tier",
        ["'critical', 'standard' or 'utility'"],
    ),
    (with_("paths", {"transcode_tmpfs": "6GiB"}), "mediastack:paths.transcode_tmpfs", ["half of jellyfin's memory"]),
    (with_host(memory="8GiB"), "mediastack:hosts[0].memory", ["memory reservations", "total"]),
    (
        with_(
            "tiers", {"standard": {"cpus": 2, "memory": "2GiB", "cpu_reservation": 2, "memory_reservation": "512MiB"}}
        ),
        "mediastack:hosts[0].cpus",
        ["CPU reservations", "more than the host has"],
    ),
    (with_("tls", {"acme_email": "not-an-email"}), "mediastack:tls.acme_email", ["e-mail address"]),
    (with_("hosts", "nas"), "mediastack:hosts", ["valid list"]),
    (with_("lan_ranges", ["192.168.1.0/33"]), "mediastack:lan_ranges", ["'192.168.1.0/33' is not a network"]),
]


@pytest.mark.parametrize(("config", "path", "words"), CASES, ids=[c[1] + f"#{i}" for i, c in enumerate(CASES)])
def test_bad_config_is_named(config: dict[str, Any], path: str, words: list[str]) -> None:
    message = refused_config(config, path, words)
    assert message.startswith("stack 'prod': "), message
    assert "Traceback" not in message


def test_every_problem_is_reported_at_once() -> None:
    cfg = with_host(memory="8GB", cpus=0, gpu="radeon")
    cfg["identity"] = {"tz": "Mars/Olympus"}
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(cfg, "prod")
    assert len(caught.value.problems) == 4
    assert "4 config problems" in str(caught.value)


def test_secret_values_are_not_echoed() -> None:
    cfg = with_("domain", "x")
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(cfg, "prod", secret_keys=frozenset({"mediastack:domain"}))
    assert "'x'" not in str(caught.value)
    assert "[secret]" in str(caught.value)


def test_repository_stacks_are_valid() -> None:
    for stack in ("dev", "prod"):
        parse_stack_config(raw_config(stack), stack)


def test_config_is_frozen() -> None:
    config = parse_stack_config(copy.deepcopy(prod()), "prod")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its ValidationError for frozen models
        config.domain = "other.example.org"  # type: ignore[misc]
