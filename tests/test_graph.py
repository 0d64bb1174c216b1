"""`mediastack graph`: the picture holds every service and network of the plan, laid out by Graphviz's `dot`.

Membership (which cluster a node is drawn in) is read back from `dot -Tjson`, i.e. from the layout dot made,
not from the source text the program wrote.
"""

from __future__ import annotations

import functools
import json
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ROOT, containers, plan, plan_config, raw_config, require_tool
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack_cli.graph import build
from mediastack_cli.main import app
from mediastack_cli.offline import PlanResult

runner = CliRunner()
KEY = "wg-private-key-that-must-stay-secret="


def vpn_config() -> dict[str, Any]:
    cfg = raw_config("prod")
    cfg["downloads"]["vpn"] = {"provider": "protonvpn", "wireguard_private_key": KEY}
    return cfg


@functools.cache
def vpn_plan() -> PlanResult:
    return plan_config(vpn_config(), stack="vpn")


def laid_out(result: PlanResult, cfg: dict[str, Any]) -> dict[str, Any]:
    """dot's own JSON of the laid-out graph (and no warnings from dot)."""
    source = build(result, resolve(parse_stack_config(cfg, result.stack), result.stack)).source
    done = subprocess.run(
        [require_tool("dot"), "-Tjson"], input=source, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # a port-like node id or an unknown colour shows up here
    return json.loads(done.stdout)


def cluster_members(doc: dict[str, Any], cluster: str) -> set[str]:
    objects = doc["objects"]
    found = next((o for o in objects if o["name"] == cluster), None)
    assert found is not None, f"no cluster {cluster}: {[o['name'] for o in objects if 'nodes' in o]}"
    return {objects[i]["name"] for i in found.get("nodes", [])}


def edges(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    names = [o["name"] for o in doc["objects"]]
    return {(names[e["tail"]], names[e["head"]]): e for e in doc.get("edges", [])}


@functools.cache
def prod_layout() -> dict[str, Any]:
    return laid_out(plan("prod"), raw_config("prod"))


def test_every_enabled_service_and_network_is_drawn() -> None:
    doc = prod_layout()
    drawn = {o["name"]: o for o in doc["objects"]}
    services = set(containers(plan("prod")))
    assert len(services) == 34
    for name in services:
        assert f"svc__{name}" in drawn, name
    networks = {
        r.inputs["name"]: r.inputs.get("internal", False)
        for r in plan("prod").resources
        if r.type == "docker:index/network:Network"
    }
    assert len(networks) == 6
    for name, internal in networks.items():
        node = drawn[f"net__{name}"]
        assert ("internal (no egress)" in node["label"]) is bool(internal), node["label"]
        assert ("dashed" in node["style"]) is bool(internal)
    # Every service sits in its host's box, with its tier and limits.
    assert {f"svc__{n}" for n in services} <= cluster_members(doc, "cluster_host_nas")
    assert "critical · 4 CPU · 8 GiB" in drawn["svc__jellyfin"]["label"]
    assert "health: curl :8096/health" in drawn["svc__jellyfin"]["label"]


def test_public_lan_only_and_internal_are_marked() -> None:
    doc = prod_layout()
    routes = edges(doc)
    drawn = {o["name"]: o for o in doc["objects"]}
    assert routes[("svc__traefik", "svc__jellyfin")]["label"] == "public"
    assert routes[("svc__traefik", "svc__prometheus")]["label"] == "LAN-only"
    assert routes[("internet", "svc__traefik")]["label"] == "https"
    assert ("svc__traefik", "svc__immich-postgres") not in routes
    assert "public: https://jellyfin.media.example.org" in drawn["svc__jellyfin"]["label"]
    assert "LAN-only: https://prometheus.media.example.org" in drawn["svc__prometheus"]["label"]
    assert "internal" in drawn["svc__immich-postgres"]["label"]
    # Routed without a UI of its own: the artwork cache answers Jellyfin's image paths.
    assert routes[("svc__traefik", "svc__artwork-cache")]["label"] == "public"
    assert "public: https://jellyfin.media.example.org (part)" in drawn["svc__artwork-cache"]["label"]


def test_the_readmes_picture_shows_every_prod_service() -> None:
    """docs/prod-stack.svg is what `mediastack graph --stack prod` draws; a new service must appear in it."""
    text = " ".join(ET.fromstring((ROOT / "docs" / "prod-stack.svg").read_text()).itertext())
    for name in containers(plan("prod")):
        assert name in text, f"{name} is missing: .venv/bin/mediastack graph --stack prod --out docs/prod-stack.svg"


def test_socket_proxy_readers_and_storage() -> None:
    doc = prod_layout()
    routes = edges(doc)
    readers = {tail for (tail, head) in routes if head == "svc__socket-proxy"}
    # Traefik takes its routes from a generated file: cAdvisor is the proxy's only reader.
    assert readers == {"svc__cadvisor"}
    assert "containers" in routes[("svc__cadvisor", "svc__socket-proxy")]["label"]
    assert "post" not in routes[("svc__cadvisor", "svc__socket-proxy")]["label"]  # POST=0 is not a section read
    drawn = {o["name"]: o for o in doc["objects"]}
    assert "node-local" in drawn["vol__config"]["label"]  # one host: nothing is shared
    data_users = {tail for (tail, head) in routes if head == "vol__data"}
    assert {"svc__sonarr", "svc__qbittorrent", "svc__jellyfin"} <= data_users


def test_vpn_clients_are_drawn_inside_the_vpn_namespace() -> None:
    doc = laid_out(vpn_plan(), vpn_config())
    inside = cluster_members(doc, "cluster_vpn_gluetun")
    assert inside == {"svc__gluetun", "svc__qbittorrent", "svc__sabnzbd"}
    # The namespace sits in its host's box, and nothing else is in it.
    assert inside <= cluster_members(doc, "cluster_host_nas")
    routes = edges(doc)
    assert routes[("svc__traefik", "svc__qbittorrent")]["label"] == "LAN-only via gluetun"  # not in exposure.public
    drawn = {o["name"]: o for o in doc["objects"]}
    assert "health: curl :8090/ + VPN namespace alive" in drawn["svc__qbittorrent"]["label"]
    # A client has no network of its own: no edge from it to any network.
    assert not any(tail == "svc__qbittorrent" and head.startswith("net__") for tail, head in routes)


def test_a_cluster_shows_its_nodes_and_the_shared_data_root() -> None:
    doc = laid_out(plan("cluster"), raw_config("cluster"))
    assert "svc__jellyfin" in cluster_members(doc, "cluster_host_gpu1")
    assert "svc__immich-postgres" in cluster_members(doc, "cluster_host_node2")
    assert "svc__cadvisor" in cluster_members(doc, "cluster_host_global")
    drawn = {o["name"]: o for o in doc["objects"]}
    assert "shared (glusterfs)" in drawn["vol__data"]["label"]
    assert "node-local" in drawn["vol__config"]["label"]  # SQLite never on the network filesystem


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_command_renders_png_and_svg(tmp_path: Path) -> None:
    require_tool("dot")
    png, svg = tmp_path / "prod.png", tmp_path / "pictures" / "prod.svg"
    for out in (png, svg):
        result = runner.invoke(app, ["graph", "--stack", "prod", "--project", str(ROOT), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.output
    width, height = _png_size(png.read_bytes())
    assert width > 800 and height > 800 and png.stat().st_size > 50_000
    root = ET.fromstring(svg.read_text())
    assert root.tag.endswith("svg")
    text = " ".join(root.itertext())
    assert "jellyfin" in text and "mediastack-socket" in text and "VPN" not in text
    assert not list(tmp_path.glob("*.gv"))  # the intermediate source is cleaned up


def test_an_unknown_format_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["graph", "--stack", "dev", "--project", str(ROOT), "--out", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2
    assert "unknown picture format '.jpg'; use a .svg or .png file name" in result.output
    assert "Traceback" not in result.output


def test_without_dot_it_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    result = runner.invoke(app, ["graph", "--stack", "dev", "--project", str(ROOT), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "`dot` is not installed; install it (Debian: apt-get install graphviz)" in result.output
