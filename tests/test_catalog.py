"""The catalog: complete, pinned, and each entry consistent with itself."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mediastack.catalog.services import BUNDLES, CATALOG, MountKind, NetworkRole
from mediastack.model.units import format_size, parse_size

REQUIRED = {
    "jellyfin",
    "seerr",
    "sonarr",
    "radarr",
    "prowlarr",
    "bazarr",
    "qbittorrent",
    "sabnzbd",
    "immich-server",
    "immich-machine-learning",
    "immich-postgres",
    "immich-postgres-replica",
    "immich-redis",
    "redis",
    "tdarr",
    "tdarr-node",
    "traefik",
    "socket-proxy",
    "prometheus",
    "grafana",
    "alertmanager",
    "node-exporter",
    "cadvisor",
    "blackbox-exporter",
    "sonarr-exporter",
    "radarr-exporter",
    "prowlarr-exporter",
    "postgres-exporter",
    "redis-exporter",
    "media-exporter",
    "artwork-cache",
    "gluetun",
    "flaresolverr",
    "unpackerr",
    "recyclarr",
    "homepage",
}


def test_catalog_covers_the_stack() -> None:
    assert set(CATALOG) == REQUIRED
    assert BUNDLES[0] == "core"


def test_every_image_is_pinned_to_a_version() -> None:
    for s in CATALOG.values():
        assert s.tag and s.tag != "latest" and re.search(r"\d", s.tag), s.name
        assert ":" not in s.image.split("/")[-1], s.name


def test_health_checks_use_the_apps_own_endpoint() -> None:
    """What they run is held to the image's facts in test_image_facts.py."""
    for s in CATALOG.values():
        if s.health is None:
            # Nothing in the image could run one (its facts): probed from outside and watched by `up`.
            assert s.role == "exporter" and s.metrics is not None and s.probe is not None, s.name
            continue
        kind, *_ = s.health.test
        assert kind in ("CMD", "CMD-SHELL"), s.name
        if s.health.probe_path:
            assert s.health.probe_path.startswith("/"), s.name


def test_web_uis_have_distinct_host_names() -> None:
    subdomains = [s.web.subdomain for s in CATALOG.values() if s.web]
    assert len(subdomains) == len(set(subdomains))


def test_requirements_and_companions_exist() -> None:
    for s in CATALOG.values():
        for other in (*s.requires, *s.companion_of):
            assert other in CATALOG, (s.name, other)


def test_databases_sit_on_internal_networks_only() -> None:
    for s in CATALOG.values():
        if s.role == "database":
            assert s.networks == {NetworkRole.database}, s.name


def test_only_the_socket_proxy_asks_for_the_docker_socket() -> None:
    owners = [s.name for s in CATALOG.values() if any(m.kind is MountKind.docker_socket for m in s.mounts)]
    assert owners == ["socket-proxy"]
    (mount,) = CATALOG["socket-proxy"].mounts
    assert mount.read_only


def test_stateful_services_keep_state_on_node_local_paths() -> None:
    for s in CATALOG.values():
        if s.state in ("sqlite", "postgres", "redis"):
            assert any(m.kind is MountKind.state for m in s.mounts), s.name


@given(st.integers(min_value=0, max_value=2**50))
def test_sizes_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=1, max_value=4096), st.sampled_from(["KiB", "MiB", "GiB", "k", "m", "g"]))
def test_sizes_parse_units(number: int, unit: str) -> None:
    factor = {"k": 1024, "m": 1024**2, "g": 1024**3}[unit[0].lower()]
    assert parse_size(f"{number}{unit}") == number * factor


def test_generated_docs_are_current() -> None:
    from mediastack_cli.docs import main

    assert main(["--check"]) == 0, "run: .venv/bin/python -m mediastack_cli.docs"


def test_what_a_service_requires_comes_before_it() -> None:
    """The stacks create services in catalog order and depend on the ones already created."""
    names = list(CATALOG)
    for s in CATALOG.values():
        for needed in s.requires:
            assert names.index(needed) < names.index(s.name), f"{s.name} requires {needed}, listed after it"
