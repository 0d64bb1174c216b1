"""The grammar of each config key that reaches another program (docs/security.md): one case per finding of
issue 16 that the model now refuses, each with the key, the value and the fix in one line."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conftest import raw_config, refused_config
from mediastack.model.config import StackConfig
from mediastack.plan.loading import ConfigError, parse_stack_config


def prod(**sections: Any) -> dict[str, Any]:
    cfg = raw_config("prod")
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def host(**changes: Any) -> dict[str, Any]:
    cfg = raw_config("prod")
    cfg["hosts"][0].update(changes)
    return cfg


def cluster_storage(**storage: Any) -> dict[str, Any]:
    cfg = raw_config("cluster")
    cfg["storage"] = {**cfg["storage"], **storage}
    return cfg


def backups(**changes: Any) -> dict[str, Any]:
    cfg = raw_config("prod")
    cfg["backups"] = {**cfg["backups"], **changes}
    return cfg


def vpn(**changes: Any) -> dict[str, Any]:
    return prod(downloads={"vpn": {"provider": "mullvad", "wireguard_private_key": "k", **changes}})


CASES = [
    # H1: a command substitution in a path that reaches the mount and brick scripts
    (cluster_storage(mount_point="/mnt/$(reboot)"), "mediastack:storage.mount_point", ["only ASCII letters"]),
    (
        cluster_storage(glusterfs={"brick_root": "/srv/`id`"}),
        "mediastack:storage.glusterfs.brick_root",
        ["no spaces, quotes, $"],
    ),
    (prod(paths={"data_root": "/srv/media/x y"}), "mediastack:paths.data_root", ["/srv/media"]),
    # M2: system roots as data roots; overlap hidden by // and /.
    (prod(paths={"data_root": "/"}), "mediastack:paths.data_root", ["system's own directory"]),
    (prod(paths={"data_root": "/etc/media"}), "mediastack:paths.data_root", ["system's own directory"]),
    (prod(paths={"photos_root": "/var"}), "mediastack:paths.photos_root", ["system's own directory"]),
    (
        prod(paths={"data_root": "/srv/media/.", "config_root": "//srv/media/config"}),
        "mediastack:paths",
        ["must not overlap"],
    ),
    # M3: a line break in the backup password
    (backups(password="pw\ntouch /x"), "mediastack:backups.password", ["one line", "restic reads only the first"]),
    # M4: fstab injection through the shared storage's settings
    (
        cluster_storage(kind="nfs", nfs={"server": "nas.lan", "export": "/e", "options": "hard 0 0\n/dev/sda1 /x"}),
        "mediastack:storage.nfs.options",
        ["comma-separated mount options"],
    ),
    (
        cluster_storage(kind="cephfs", cephfs={"monitors": ["10.0.0.1"], "path": "/m edia"}),
        "mediastack:storage.cephfs.path",
        ["only ASCII letters"],
    ),
    # L4: a trailing newline where `$` used to accept it
    (prod(domain="media.example.org\n"), "mediastack:domain", ["DNS name"]),
    (host(address="nas.home.arpa\n"), "mediastack:hosts[0].address", ["IP address or a DNS name"]),
    (host(name="nas\n"), "mediastack:hosts[0].name", ["lower case letters"]),
    (prod(services={"sonarr": {"image_tag": "4.0.14\n"}}), "mediastack:services.sonarr.image_tag", ["version tag"]),
    # L5: non-ASCII digits in a schedule (systemd refuses them); a line that would add a unit directive
    (backups(schedule="*-*-* ٠٣:30:00"), "mediastack:backups.schedule", ["ASCII"]),
    (backups(schedule="*-*-* 03:30\nExecStartPre=/x"), "mediastack:backups.schedule", ["ASCII"]),
    # L6: keys that had no grammar
    (host(ssh_user="-oProxyCommand=x"), "mediastack:hosts[0].ssh_user", ["user name", "not starting with -"]),
    (host(docker_host="tcp://nas:2375"), "mediastack:hosts[0].docker_host", ["plain tcp://", "ssh://user@host"]),
    (host(docker_host="ssh://deploy@nas;id"), "mediastack:hosts[0].docker_host", ["IP address or a DNS name"]),
    (prod(tls={"acme_email": "a@b.org\nx"}), "mediastack:tls.acme_email", ["e-mail address"]),
    (vpn(wireguard_addresses="10.64.1.2/32;x"), "mediastack:downloads.vpn.wireguard_addresses", ["10.64.1.2/32"]),
    (vpn(server_countries=["Sweden,Norway"]), "mediastack:downloads.vpn.server_countries", ["country name"]),
    (
        prod(alerting={"email": {"to": "a@b.org", "sender": "$(id)@b.org", "smarthost": "smtp.b.org:587"}}),
        "mediastack:alerting.email.sender",
        ["e-mail address"],
    ),
    (
        prod(alerting={"email": {"to": "a@b.org", "sender": "c@b.org", "smarthost": "smtp.b.org:٥٨٧"}}),
        "mediastack:alerting.email.smarthost",
        ["host:port"],
    ),
    # L9: plain http to another host carries keys and passwords in clear
    (
        prod(wiring={"urls": {"sonarr": "http://192.168.1.10:8989"}}),
        "mediastack:wiring.urls",
        ["plain http:// to another host", "https://"],
    ),
    (prod(alerting={"webhook_urls": ["https://h.org/$(id)"]}), "mediastack:alerting.webhook_urls", ["not an http(s)"]),
]


@pytest.mark.parametrize(("config", "path", "words"), CASES, ids=[f"{c[1]}#{i}" for i, c in enumerate(CASES)])
def test_refused_with_key_value_and_fix(config: dict[str, Any], path: str, words: list[str]) -> None:
    refused_config(config, path, words)


def test_paths_are_normalised_before_any_comparison() -> None:
    cfg = prod(paths={"data_root": "//srv//media/./data/", "config_root": "/srv/media/config"})
    paths = parse_stack_config(cfg, "prod").paths
    assert paths.data_root == "/srv/media/data"


def test_what_stays_accepted() -> None:
    """The shipped stacks, and the forms the docs name."""
    for stack in ("dev", "prod", "cluster"):
        parse_stack_config(raw_config(stack), stack)
    cfg = host(docker_host="ssh://deploy@nas.home.arpa:2222")
    cfg["wiring"] = {"urls": {"sonarr": "http://localhost:8989", "radarr": "https://192.168.1.10:7878"}}
    cfg["downloads"] = {"vpn": {"provider": "mullvad", "wireguard_private_key": "k", "server_countries": ["Sweden"]}}
    cfg["downloads"]["vpn"]["wireguard_addresses"] = "10.64.1.2/32,fc00:bbbb::2/128"
    parse_stack_config(cfg, "prod")


def test_wiring_checks_tls_unless_told_otherwise() -> None:
    """L9: without tls.acme_email the wiring used to send keys and passwords with verification off."""
    no_acme = copy.deepcopy(raw_config("prod"))
    del no_acme["tls"]
    assert StackConfig.model_validate(no_acme).wiring.verify_tls is True
    no_acme["wiring"] = {"verify_tls": False}  # an explicit, visible choice
    assert StackConfig.model_validate(no_acme).wiring.verify_tls is False


def test_systemd_refuses_the_non_ascii_digits_the_model_refuses() -> None:
    """L5: Python's int() reads Arabic-Indic digits; systemd does not, so the model must not pass them on."""
    import subprocess

    from conftest import require_tool

    analyze = require_tool("systemd-analyze")
    for schedule, accepted in (("*-*-* 03:30:00", True), ("*-*-* ٠٣:30:00", False)):
        done = subprocess.run([analyze, "calendar", schedule], capture_output=True, text=True, timeout=30)
        assert (done.returncode == 0) is accepted, done.stderr
        try:
            parse_stack_config(backups(schedule=schedule), "prod")
            model_accepts = True
        except ConfigError:
            model_accepts = False
        assert model_accepts is accepted
