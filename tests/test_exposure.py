"""Exposure and least privilege: which UIs the internet reaches, the LAN ranges, Traefik's generated routes, and the
policies that hold them (public route needs a login, engine socket by resolved path, host device allow-list)."""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import sys
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from conftest import CONTAINER, ROOT, containers, edit_host_files, plan, raw_config, traefik_dynamic
from mediastack.generate.files import traefik_dynamic_config, traefik_public_routes
from mediastack.plan.loading import ConfigError, parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack_cli.analyzer import PolicyPack
from mediastack_cli.offline import Registration

sys.path.insert(0, str(ROOT / "policies"))
from mediastack_policies.privileges import normal_path, reached_socket

SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"


def problems(config: dict[str, Any], stack: str = "t") -> list[str]:
    try:
        parse_stack_config(config, stack)
    except ConfigError as error:
        return [str(p) for p in error.problems]
    return []


# -- the config ------------------------------------------------------------------------------------------


def test_by_default_only_jellyfin_immich_and_seerr_are_public() -> None:
    config = parse_stack_config(raw_config("prod"), "prod")
    assert config.exposure.public == ["jellyfin", "immich-server", "seerr"]
    assert config.lan_ranges == ["10.0.0.0/8", "172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]
    # Docker's bridge pools (172.17-31) are not LAN; on a cluster neither are the overlays' (10.0.0.0/8).
    cluster = parse_stack_config(raw_config("cluster"), "cluster")
    assert cluster.lan_ranges == ["172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]
    assert cluster.docker_ranges[-1] == "10.0.0.0/8" and "10.0.0.0/8" not in config.docker_ranges


@pytest.mark.parametrize(
    ("ranges", "stack", "message"),
    [
        (
            ["0.0.0.0/0"],
            "prod",
            "mediastack:lan_ranges[0] = '0.0.0.0/0': lets every address on the internet reach the LAN-only UIs, some "
            "of which have no login of their own; list your LAN's ranges (a UI with a login goes in "
            "mediastack:exposure.public)",
        ),
        (["192.168.1.0/24", "::/0"], "prod", "mediastack:lan_ranges[1] = '::/0': lets every address on the internet"),
        (
            ["172.16.0.0/12"],
            "prod",
            "mediastack:lan_ranges[0] = '172.16.0.0/12': overlaps 172.17.0.0/16, where Docker allocates the stack's "
            "networks, so any container would pass as a LAN client; narrow it to your LAN (e.g. 192.168.1.0/24), set "
            "mediastack:exposure.docker_ranges to the pools your Docker daemon uses, or set "
            "exposure.allow_any_source: true",
        ),
        (["172.30.5.0/24"], "prod", "mediastack:lan_ranges[0] = '172.30.5.0/24': overlaps 172.24.0.0/13"),
        (["10.1.0.0/16"], "cluster", "mediastack:lan_ranges[0] = '10.1.0.0/16': overlaps 10.0.0.0/8"),
    ],
)
def test_lan_ranges_that_let_in_everyone_or_the_containers_are_refused(
    ranges: list[str], stack: str, message: str
) -> None:
    cfg = raw_config(stack)
    cfg["lan_ranges"] = ranges
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith(message), found
    cfg["exposure"] = {"allow_any_source": True}
    # The opt-in covers an overlap with Docker's pools, never every address (the pack would refuse the plan).
    assert problems(cfg) == ([] if all(not r.endswith("/0") for r in ranges) else found)


def test_docker_ranges_follow_the_daemons_pools() -> None:
    cfg = raw_config("prod")
    cfg["lan_ranges"] = ["172.16.0.0/12"]
    cfg["exposure"] = {"docker_ranges": ["192.168.208.0/20"]}  # daemon.json default-address-pools
    assert problems(cfg) == []
    cfg["lan_ranges"] = ["192.168.0.0/16"]
    assert problems(cfg)[0].startswith("mediastack:lan_ranges[0] = '192.168.0.0/16': overlaps 192.168.208.0/20")


@pytest.mark.parametrize(
    ("public", "message"),
    [
        (
            ["jellyfin", "tdarr"],
            "mediastack:exposure.public[1] = 'tdarr': tdarr's UI has no login of its own, so anyone on the internet "
            "could use it; remove it from exposure.public (it stays reachable from lan_ranges)",
        ),
        (["prometheus"], "mediastack:exposure.public[0] = 'prometheus': prometheus's UI has no login of its own"),
        (["traefik"], "mediastack:exposure.public[0] = 'traefik': traefik's UI has no login of its own"),
        (["homepage"], "mediastack:exposure.public[0] = 'homepage': homepage's UI has no login of its own"),
        (["jellyfn"], "mediastack:exposure.public[0] = 'jellyfn': unknown service; did you mean 'jellyfin'?"),
        (["redis"], "mediastack:exposure.public[0] = 'redis': redis has no web UI to make public; remove it"),
        (["Jellyfin!"], "mediastack:exposure.public = [\"Jellyfin!\"]: 'Jellyfin!' is not a catalog service name"),
    ],
)
def test_a_public_ui_needs_a_login(public: list[str], message: str) -> None:
    cfg = raw_config("prod")
    cfg["exposure"] = {"public": public}
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith(message), found


def test_public_uis_with_a_login_are_accepted() -> None:
    cfg = raw_config("prod")
    cfg["exposure"] = {"public": ["jellyfin", "immich-server", "grafana", "sonarr"]}
    config = parse_stack_config(cfg, "prod")
    # Public once the logins exist: a router without the allow-list in the file that opens them.
    public, _ = traefik_public_routes(resolve(config, "prod")) or ("", [])
    http = yaml.safe_load(public)["http"]
    assert http["routers"]["sonarr-public"]["middlewares"] == ["sonarr-public-compress"]
    assert "radarr-public" not in http["routers"]
    main = yaml.safe_load(traefik_dynamic_config(resolve(config, "prod")))["http"]
    assert main["routers"]["radarr"]["middlewares"] == ["radarr-lan", "radarr-compress"]


# -- Traefik's dynamic config, held to Traefik's file-provider schema --------------------------------------
# Debian ships no Traefik, so the generated file is checked against the schema of Traefik v3's file provider
# (SchemaStore/schemastore src/schemas/json/traefik-v3-file-provider.json @382d06c: httpRouter,
# httpLoadBalancerService, compressMiddleware, ipAllowListMiddleware, all additionalProperties false), the parts
# this file uses, plus what Traefik checks on load: every router's service and middlewares exist, ranges parse.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Tls(_Strict):
    options: str | None = None
    certResolver: str | None = None


class _Router(_Strict):
    rule: str
    service: str
    entryPoints: list[str] = []
    middlewares: list[str] = []
    priority: int = Field(0, ge=0)
    ruleSyntax: str | None = None
    tls: _Tls | None = None


class _Server(_Strict):
    url: str


class _LoadBalancer(_Strict):
    servers: list[_Server] = Field(min_length=1)
    passHostHeader: bool = True


class _Service(_Strict):
    loadBalancer: _LoadBalancer


class _Compress(_Strict):
    excludedContentTypes: list[str] = []
    includedContentTypes: list[str] = []
    minResponseBodyBytes: int = 1024
    defaultEncoding: str | None = None
    encodings: list[str] = []


class _IpAllowList(_Strict):
    sourceRange: list[str]
    rejectStatusCode: int | None = None


class _Middleware(_Strict):
    compress: _Compress | None = None
    ipAllowList: _IpAllowList | None = None


class _Http(_Strict):
    routers: dict[str, _Router]
    services: dict[str, _Service] = {}
    middlewares: dict[str, _Middleware] = {}


class _Dynamic(_Strict):
    http: _Http


def check_traefik_file(text: str) -> _Dynamic:
    doc = _Dynamic.model_validate(yaml.safe_load(text))
    http = doc.http
    for name, router in http.routers.items():
        assert router.service in http.services or router.service.endswith("@internal"), name
        for m in router.middlewares:
            assert m in http.middlewares, (name, m)
        # v3 rule syntax: matchers with backquoted arguments joined by &&; PathRegexp takes a Go (RE2) regexp.
        matchers = re.findall(r"(\w+)\(`([^`]*)`\)", router.rule)
        assert matchers and " && ".join(f"{k}(`{v}`)" for k, v in matchers) == router.rule, router.rule
        for kind, arg in matchers:
            assert kind in ("Host", "PathRegexp"), kind
            if kind == "PathRegexp":
                re.compile(arg)
    for name, middleware in http.middlewares.items():
        assert len(middleware.model_dump(exclude_none=True)) == 1, name  # one kind per middleware
        for cidr in middleware.ipAllowList.sourceRange if middleware.ipAllowList else ():
            ipaddress.ip_network(cidr, strict=True)
    for service in http.services.values():
        for server in service.loadBalancer.servers:
            assert re.fullmatch(r"http://[a-z][a-z0-9-]*:\d+", server.url), server.url
    return doc


@pytest.mark.parametrize("stack", ["dev", "prod", "cluster"])
def test_traefik_dynamic_config_matches_the_file_provider_schema(stack: str) -> None:
    config = parse_stack_config(raw_config(stack), stack)
    doc = check_traefik_file(traefik_dynamic_config(resolve(config, stack)))
    assert doc.http.routers
    # The plan carries the same files to Traefik (written into the directory it binds on one host, a Swarm
    # config on a cluster): the main routes, and the public ones once the logins exist.
    resolved = resolve(config, stack)
    public = traefik_public_routes(resolved)
    expected = yaml.safe_load(traefik_dynamic_config(resolved))
    if public is not None:
        check_traefik_file(public[0])
        for section, entries in yaml.safe_load(public[0])["http"].items():
            expected["http"].setdefault(section, {}).update(entries)
    assert traefik_dynamic(plan(stack)) == expected


def test_the_schema_check_refuses_what_traefik_would() -> None:
    good = traefik_dynamic_config(resolve(parse_stack_config(raw_config("prod"), "prod"), "prod"))
    doc = yaml.safe_load(good)
    for mutate in (
        lambda d: d["http"]["routers"]["sonarr"].update(middleware=["x"]),  # misspelt key
        lambda d: d["http"]["routers"]["sonarr"].update(service="nope"),
        lambda d: d["http"]["middlewares"]["tdarr-lan"]["ipAllowList"].update(sourceRange=["192.168.0.0/33"]),
        lambda d: d["http"]["services"]["sonarr"]["loadBalancer"].update(servers=[]),
        lambda d: d["http"]["routers"]["artwork"].update(priority=-1),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises((AssertionError, ValueError)):
            check_traefik_file(yaml.safe_dump(bad))


# -- policies, through the analyzer -------------------------------------------------------------------


def reg(type_: str, props: dict[str, Any], name: str) -> Registration:
    return Registration(
        urn=f"urn:pulumi:test::mediastack::{type_}::{name}", type=type_, name=name, parent="", custom=True, inputs=props
    )


def _message(text: str) -> str:
    return text.split("\n", 1)[-1]  # the analyzer sends the policy's description, a newline, then the message


def stack_messages(pack: PolicyPack, resources: list[Registration], policy: str) -> list[str]:
    return [_message(d.message) for d in pack.analyze_stack(resources).diagnostics if d.policyName == policy]


def resource_messages(pack: PolicyPack, props: dict[str, Any], policy: str, type_: str = CONTAINER) -> list[str]:
    return [_message(d.message) for d in pack.analyze(reg(type_, props, "r")).diagnostics if d.policyName == policy]


def changed(text: str, change) -> str:
    doc = yaml.safe_load(text)
    change(doc["http"])
    return yaml.safe_dump(doc)


def with_routes(stack: str, change) -> list[Registration]:
    """The stack's resources with Traefik's dynamic config changed (the file the host step writes into the
    directory Traefik binds, or its Swarm config)."""
    result = []
    for r in plan(stack).resources:
        if not r.custom:
            continue
        inputs = copy.deepcopy(r.inputs)
        if r.type.startswith("command:") and isinstance(inputs.get("create"), str):
            # Traefik's main routes file (a public UI's router opens in public.yml once its login exists).
            inputs["create"] = edit_host_files(
                inputs["create"], lambda text: changed(text, change), where="/generated/traefik/mediastack.yml"
            )
        if r.type == SERVICE_CONFIG and inputs["name"].startswith("mediastack-traefik-dynamic-"):
            doc = yaml.safe_load(base64.b64decode(inputs["data"]).decode())
            change(doc["http"])
            inputs["data"] = base64.b64encode(yaml.safe_dump(doc).encode()).decode()
        result.append(reg(r.type, inputs, r.name))
    return result


def open_up(router: str):
    def change(http: dict[str, Any]) -> None:
        http["routers"][router]["middlewares"] = [m for m in http["routers"][router]["middlewares"] if "-lan" not in m]

    return change


@pytest.mark.parametrize("stack", ["prod", "cluster"])
def test_a_public_route_to_a_ui_without_a_login_is_refused(pack: PolicyPack, stack: str) -> None:
    policy = "public-route-needs-login"
    assert stack_messages(pack, with_routes(stack, lambda http: None), policy) == []
    assert stack_messages(pack, with_routes(stack, open_up("tdarr")), policy) == [
        "router tdarr: public route (no ipAllowList) to tdarr, which has no login of its own; keep it LAN-only "
        "(remove it from mediastack:exposure.public)"
    ]
    assert stack_messages(pack, with_routes(stack, open_up("traefik")), policy) == [
        "router traefik: public route (no ipAllowList) to traefik, which has no login of its own; keep it LAN-only "
        "(remove it from mediastack:exposure.public)"
    ]
    # The start page lists every UI and shows live figures from their APIs: never public.
    assert stack_messages(pack, with_routes(stack, open_up("homepage")), policy) == [
        "router homepage: public route (no ipAllowList) to homepage, which has no login of its own; keep it LAN-only "
        "(remove it from mediastack:exposure.public)"
    ]
    # A UI with a login of its own may be public.
    assert stack_messages(pack, with_routes(stack, open_up("sonarr")), policy) == []

    def allow_everyone(http: dict[str, Any]) -> None:
        http["middlewares"]["prometheus-lan"]["ipAllowList"]["sourceRange"] = ["0.0.0.0/0"]

    (message,) = stack_messages(pack, with_routes(stack, allow_everyone), policy)
    assert message.startswith("router prometheus: public route (no ipAllowList) to prometheus, which has no login")


def test_the_artwork_cache_counts_as_jellyfin(pack: PolicyPack) -> None:
    """The cache serves Jellyfin's images: public with Jellyfin's login; not when its front loses the login."""
    policy = "public-route-needs-login"
    resources = with_routes("prod", lambda http: None)
    no_login = []
    for r in resources:
        if r.type == CONTAINER and r.inputs["name"] == "jellyfin":
            inputs = copy.deepcopy(r.inputs)
            inputs["labels"] = [
                {**lb, "value": "none"} if lb["label"] == "mediastack.login" else lb for lb in inputs["labels"]
            ]
            r = reg(r.type, inputs, r.name)
        no_login.append(r)
    messages = stack_messages(pack, no_login, policy)
    assert (
        "router artwork-public: public route (no ipAllowList) to artwork-cache (in front of jellyfin), which has "
        in (" ".join(messages))
    )
    assert any(m.startswith("router jellyfin-public: public route") for m in messages)


def test_a_route_to_something_unknown_is_reported(pack: PolicyPack) -> None:
    def stray(http: dict[str, Any]) -> None:
        http["routers"]["stray"] = {"rule": "Host(`x.example.org`)", "service": "stray", "entryPoints": ["websecure"]}
        http["services"]["stray"] = {"loadBalancer": {"servers": [{"url": "http://10.1.2.3:80"}]}}

    assert stack_messages(pack, with_routes("prod", stray), "public-route-needs-login") == [
        "router stray: public route to 10.1.2.3, which is no workload of this stack (unknown)"
    ]


def test_a_ui_without_a_route_is_reported(pack: PolicyPack) -> None:
    def drop(http: dict[str, Any]) -> None:
        del http["routers"]["sonarr"]

    assert stack_messages(pack, with_routes("prod", drop), "web-ui-routed") == [
        "sonarr: web UI on port 8989 is not routed through the reverse proxy"
    ]


SOCKET_PATHS = ["/var/run/docker.sock", "/run/./docker.sock", "//run/docker.sock", "/", "/var/run/..", "/run/"]


@pytest.mark.parametrize("source", SOCKET_PATHS)
def test_the_engine_socket_is_caught_by_its_resolved_path(pack: PolicyPack, source: str) -> None:
    sonarr = copy.deepcopy(containers(plan("prod"))["sonarr"])
    sonarr["mounts"] = [*sonarr["mounts"], {"type": "bind", "source": source, "target": "/x", "readOnly": True}]
    (message,) = resource_messages(pack, sonarr, "docker-socket-via-proxy")
    resolved = normal_path(source)
    shown = source if resolved == source else f"{source} (= {resolved})"
    assert message == (
        f"sonarr: mounts {shown}, which reaches {reached_socket(source)}; only the socket proxy may reach the Docker "
        "API (a read-only mount of the socket still gives the whole engine)"
    )


def test_socket_paths_resolve() -> None:
    assert normal_path("//run//docker.sock") == "/run/docker.sock"
    assert normal_path("/var/run/..") == "/var"
    assert reached_socket("/var/run/..") == "/var/run/docker.sock"
    assert reached_socket("/run/containerd") == "/run/containerd/containerd.sock"
    assert reached_socket("/srv/media/config") is None and reached_socket("/var/lib/docker/image") is None
    assert reached_socket("/runner") is None  # a prefix is not a parent


def test_only_an_unprivileged_reader_may_mount_the_hosts_root(pack: PolicyPack) -> None:
    node = copy.deepcopy(containers(plan("prod"))["node-exporter"])
    assert resource_messages(pack, node, "docker-socket-via-proxy") == []
    (message,) = resource_messages(pack, {**node, "user": "0:0"}, "docker-socket-via-proxy")
    assert message.startswith("node-exporter: mounts /, which reaches /run/docker.sock; only the socket proxy")
    cadvisor = copy.deepcopy(containers(plan("prod"))["cadvisor"])
    assert resource_messages(pack, cadvisor, "docker-socket-via-proxy") == []
    root = {"type": "bind", "source": "/", "target": "/rootfs", "readOnly": True}  # what it had before
    (message,) = resource_messages(pack, {**cadvisor, "mounts": [root]}, "docker-socket-via-proxy")
    assert message.startswith("cadvisor: mounts /, which reaches /run/docker.sock")


def test_host_devices_come_from_the_allow_list(pack: PolicyPack) -> None:
    policy = "host-devices-allow-list"
    jellyfin = copy.deepcopy(containers(plan("prod"))["jellyfin"])
    assert [d["hostPath"] for d in jellyfin["devices"]] == ["/dev/dri"]
    assert resource_messages(pack, jellyfin, policy) == []

    def devices(*paths: str) -> dict[str, Any]:
        return {**jellyfin, "devices": [{"hostPath": p, "containerPath": p, "permissions": "rwm"} for p in paths]}

    ok = ("/dev/dri/renderD128", "/dev/dri/card0", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm")
    assert resource_messages(pack, devices(*ok), policy) == []
    assert resource_messages(pack, devices("/dev/sda"), policy) == [
        "jellyfin: gets host device /dev/sda, not on the allow-list (GPU render nodes /dev/dri/*, the NVIDIA "
        "devices, /dev/net/tun for the VPN container)"
    ]
    assert resource_messages(pack, devices("/dev/dri/../mem"), policy) == [
        "jellyfin: gets host device /dev/dri/../mem, not on the allow-list (GPU render nodes /dev/dri/*, the NVIDIA "
        "devices, /dev/net/tun for the VPN container)"
    ]
    assert resource_messages(pack, devices("/dev/net/tun"), policy) == [
        "jellyfin: gets /dev/net/tun, which only the VPN container may have (role vpn); share the VPN container's "
        "network instead"
    ]
    vpn = {
        **devices("/dev/net/tun"),
        "labels": [{"label": "mediastack.role", "value": "vpn"}, {"label": "mediastack.service", "value": "gluetun"}],
    }
    assert resource_messages(pack, vpn, policy) == []


def test_a_swarm_service_gets_devices_as_mounts_and_is_held_to_the_same_list(pack: PolicyPack) -> None:
    svc = next(r.inputs for r in plan("cluster").resources if r.type.endswith("service:Service") and r.name)
    svc = copy.deepcopy(svc)
    spec = svc["taskSpec"]["containerSpec"]
    spec["mounts"] = [*spec.get("mounts", []), {"type": "bind", "source": "/dev/mem", "target": "/dev/mem"}]
    (message,) = resource_messages(pack, svc, "host-devices-allow-list", "docker:index/service:Service")
    assert "gets host device /dev/mem, not on the allow-list" in message


def test_routes_to_clients_behind_the_vpn_reach_the_clients_login(pack: PolicyPack) -> None:
    """The VPN container answers to its clients' names; a route to qbittorrent means qBittorrent (which has a
    login), not the VPN container (which has none)."""
    from conftest import plan_config

    cfg = raw_config("prod")
    cfg["downloads"]["vpn"] = {"provider": "protonvpn", "wireguard_private_key": "k" * 43 + "="}
    cfg["exposure"] = {"public": ["jellyfin", "qbittorrent"]}
    resources = [r for r in plan_config(cfg, stack="vpn-public").resources if r.custom]
    gluetun = next(r.inputs for r in resources if r.type == CONTAINER and r.inputs["name"] == "gluetun")
    assert "qbittorrent" in gluetun["networksAdvanced"][0]["aliases"]
    assert stack_messages(pack, resources, "web-ui-routed") == []
    assert stack_messages(pack, resources, "public-route-needs-login") == []


def test_a_bad_docker_range_is_a_config_error() -> None:
    cfg = raw_config("prod")
    cfg["exposure"] = {"docker_ranges": ["172.17.0.0/33"]}
    assert problems(cfg) == [
        "mediastack:exposure.docker_ranges = [\"172.17.0.0/33\"]: '172.17.0.0/33' is not a network such as "
        "192.168.0.0/16"
    ]


def test_lan_ranges_versus_docker_pools_for_any_ipv4_range() -> None:
    """Any IPv4 range: refused exactly when it covers everything or shares an address with 172.17.0.0-172.31.255.255
    (Docker's bridge pools), checked against the address arithmetic, not the implementation's list."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mediastack.model.config import StackConfig

    base = raw_config("prod")
    docker_first, docker_last = int(ipaddress.ip_address("172.17.0.0")), int(ipaddress.ip_address("172.31.255.255"))

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.integers(0, 32))
    def check(address: int, prefix: int) -> None:
        net = ipaddress.ip_network((address, prefix), strict=False)
        config = StackConfig.model_validate({**base, "lan_ranges": [str(net)]})
        first, last = int(net.network_address), int(net.broadcast_address)
        expected = prefix == 0 or (first <= docker_last and last >= docker_first)
        assert bool(config.lan_range_problems()) == expected, net

    check()


@pytest.mark.parametrize("source", ["/", "/run/./", "//run", "/var/./run", "/run/containerd", "/var"])
def test_an_extra_mount_that_reaches_the_socket_is_a_config_error(source: str) -> None:
    cfg = raw_config("prod")
    cfg["services"] = {**cfg.get("services", {}), "sonarr": {"mounts": [{"source": source, "target": "/host"}]}}
    (found,) = problems(cfg)
    # Whichever check meets it first (the mount's own grammar or the resolved-path check), one line names it.
    assert found.startswith(f"mediastack:services.sonarr.mounts[0].source = '{source}': ") or found.startswith(
        f"mediastack:services.sonarr.mounts[0].source = '{source.rstrip('/') or '/'}': reaches "
    )
    assert "only the socket proxy may reach the Docker" in found
    cfg["services"]["sonarr"]["mounts"][0]["source"] = "/srv/media/extra"
    assert problems(cfg) == []


def test_routes_that_cannot_be_read_are_reported_not_passed(pack: PolicyPack) -> None:
    resources = []
    for r in with_routes("prod", lambda http: None):
        if r.type == CONTAINER and r.inputs["name"] == "traefik":
            command = [a for a in r.inputs["command"] if not a.startswith("--providers.file.")]
            r = reg(r.type, {**r.inputs, "command": [*command, "--providers.docker=true"]}, r.name)
        resources.append(r)
    assert stack_messages(pack, resources, "public-route-needs-login") == [
        "the reverse proxy's routes cannot be read from the plan (no file provider, or its file unknown): which "
        "routes are public is unknown"
    ]


def test_every_web_ui_states_its_login() -> None:
    from mediastack.catalog.services import CATALOG

    logins = {name: (s.web.login.value if s.web.login else None) for name, s in CATALOG.items() if s.web}
    assert logins == {
        "traefik": None,
        "jellyfin": "accounts",
        "sonarr": "forms",
        "radarr": "forms",
        "prowlarr": "forms",
        "bazarr": "forms",
        "qbittorrent": "password",
        "sabnzbd": "forms",
        "immich-server": "accounts",
        "tdarr": None,
        "prometheus": None,
        "alertmanager": None,
        "grafana": "accounts",
        "seerr": "accounts",  # Jellyfin's accounts; its admin is created at deploy time
        "homepage": None,
    }
    # docs/security.md lists the same: each UI without a login is named in its "none" row.
    doc = (ROOT / "docs/security.md").read_text()
    none_row = next(line for line in doc.splitlines() if line.endswith("| none | LAN, always |"))
    for name in ("Traefik", "Prometheus", "Alertmanager", "Tdarr", "Homepage"):
        assert name in none_row
