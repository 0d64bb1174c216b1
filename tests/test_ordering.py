"""What runs before what, read from the dependencies the program recorded with each registration (what the engine
orders by), never from registration order or script text.

A container waits for its host's directories and first-start files through the component it belongs to: the
SDK registers a child only once its parent is registered, and the parent's registration waits for everything it
depends on to be created."""

from __future__ import annotations

import pytest

from conftest import CONTAINER, plan
from mediastack_cli.offline import PlanResult, Registration


def waits_for(result: PlanResult, r: Registration) -> set[str]:
    """Names of what `r` waits for: its own dependencies and those of every component above it."""
    by_urn = {x.urn: x for x in result.resources}
    names: set[str] = set()
    node: Registration | None = r
    while node is not None:
        names |= {by_urn[d].name for d in node.dependencies if d in by_urn}
        node = by_urn.get(node.parent)
    return names


def named(result: PlanResult, suffix: str) -> Registration:
    (found,) = [r for r in result.resources if r.name.endswith(suffix)]
    return found


@pytest.mark.parametrize(("stack", "host"), [("dev", "dev"), ("prod", "nas"), ("home", "home")])
def test_every_container_waits_for_its_directories_and_seeds(stack: str, host: str) -> None:
    result = plan(stack)
    dirs = named(result, f"-{host}-storage-dirs").name
    seeds = named(result, f"-{host}-storage-seeds").name
    containers = [r for r in result.resources if r.type == CONTAINER]
    assert len(containers) >= 8
    for c in containers:
        assert {dirs, seeds} <= waits_for(result, c), c.name


@pytest.mark.parametrize(("stack", "host"), [("dev", "dev"), ("prod", "nas")])
def test_seeds_wait_for_the_directories(stack: str, host: str) -> None:
    result = plan(stack)
    seeds = named(result, f"-{host}-storage-seeds")
    assert named(result, f"-{host}-storage-dirs").urn in seeds.dependencies


def test_download_clients_wait_for_the_vpn_container() -> None:
    result = plan("home")
    containers = {r.inputs["name"]: r for r in result.resources if r.type == CONTAINER}
    for client in ("qbittorrent", "sabnzbd"):
        assert containers[client].inputs["networkMode"] == f"container:{containers['gluetun'].id}"
        assert "media-gluetun-container" in waits_for(result, containers[client]), client


def test_backups_wait_for_the_directories() -> None:
    result = plan("prod")
    install = named(result, "-backups-install")
    assert "media-nas-storage-dirs" in waits_for(result, install)
