"""The whole program under Pulumi's mocks, for the repository's stacks: the invariants that matter."""

from __future__ import annotations

import json
import re
import sys

import pytest

from conftest import (
    CONTAINER,
    ROOT,
    container_labels,
    containers,
    dependencies_expanded,
    plan,
    plan_config,
    raw_config,
    traefik_dynamic,
)
from mediastack.catalog.services import CATALOG, INTERNAL_NETWORKS, NetworkRole

MIB = 1024**2
STACKS = ("dev", "prod")


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_is_bounded_and_healthy(stack: str) -> None:
    for name, c in containers(plan(stack)).items():
        assert c["memory"] >= 6 and float(c["cpus"]) > 0, name
        assert 0 < c["memoryReservation"] <= c["memory"], name
        assert c["cpuShares"] >= 2, name
        assert c["restart"] == "unless-stopped", name
        assert c["logDriver"] == "local" and c["logOpts"] == {"max-size": "10m", "max-file": "5"}, name
        assert c["securityOpts"] == ["no-new-privileges:true"], name
        assert c["capabilities"]["drops"] == ["ALL"], name
        assert not c.get("privileged"), name
        # node-exporter alone shares the host's network namespace (upstream's way; policy no-host-namespaces)
        assert c.get("networkMode") == ("host" if name == "node-exporter" else None), name
        assert "pidMode" not in c and "ipcMode" not in c, name
        if CATALOG[name].health is None:
            continue  # distroless exporters: watched by Prometheus' `up`, see docs/catalog.md
        health = c["healthcheck"]
        assert health["interval"] == "30s" and health["timeout"] == "10s" and health["retries"] == 3, name
        assert re.fullmatch(r"\d+s", health["startPeriod"]), name
        assert health["tests"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_critical_tier_cannot_swap(stack: str) -> None:
    for name, c in containers(plan(stack)).items():
        tier = next(label["value"] for label in c["labels"] if label["label"] == "mediastack.tier")
        if tier == "critical":
            assert c["memorySwap"] == c["memory"], name
        else:
            assert "memorySwap" not in c, name


def test_prod_limits_come_from_the_tiers() -> None:
    c = containers(plan("prod"))
    assert (c["jellyfin"]["cpus"], c["jellyfin"]["memory"], c["jellyfin"]["memoryReservation"]) == ("4", 8192, 2048)
    assert (c["sonarr"]["cpus"], c["sonarr"]["memory"]) == ("2", 2048)
    assert (c["node-exporter"]["cpus"], c["node-exporter"]["memory"]) == ("0.5", 512)
    # catalog adjustment (3GiB) then the stack's override (4GiB) on top
    assert c["immich-machine-learning"]["memory"] == 4096
    dev = containers(plan("dev"))
    assert (dev["jellyfin"]["cpus"], dev["jellyfin"]["memory"]) == ("2", 2048)


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned_and_pulled_first(stack: str) -> None:
    result = plan(stack)
    images = {r.inputs["name"] for r in result.resources if r.type == "docker:index/remoteImage:RemoteImage"}
    for ref in images:
        repo, _, tag = ref.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, ref
    built = {r.inputs["imageName"]: r.inputs for r in result.resources if r.type == "docker:index/image:Image"}
    for name, c in containers(result).items():
        label = next(label["value"] for label in c["labels"] if label["label"] == "mediastack.image")
        if CATALOG[name].build:
            # built on the host from images/<name>: the pinned name is the image
            assert c["image"] == label and label in built, name
            assert built[label]["build"]["context"] == CATALOG[name].build and built[label]["skipPush"] is True
            continue
        assert re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", c["image"]), (name, c["image"])
        assert label in images


def test_dev_is_a_subset_and_prod_is_the_whole_catalog() -> None:
    dev, prod = set(containers(plan("dev"))), set(containers(plan("prod")))
    # the VPN runs only when downloads.vpn is configured; a database replica only on a cluster
    assert prod == set(CATALOG) - {"gluetun"} - {s.name for s in CATALOG.values() if s.cluster_only}
    assert {"socket-proxy", "traefik", "jellyfin", "sonarr", "radarr", "qbittorrent"} <= dev < prod
    assert "bazarr" not in dev and "prometheus" not in dev


@pytest.mark.parametrize("stack", STACKS)
def test_networks_per_service(stack: str) -> None:
    result = plan(stack)
    nets = {r.inputs["name"]: r.inputs for r in result.resources if r.type == "docker:index/network:Network"}
    for role in INTERNAL_NETWORKS:
        if f"mediastack-{role}" in nets:
            assert nets[f"mediastack-{role}"]["internal"] is True
    assert nets["mediastack-frontend"]["internal"] is False
    monitored = "prometheus" in containers(result)
    for name, c in containers(result).items():
        attached = {n["name"].removeprefix("mediastack-") for n in c["networksAdvanced"]}
        expected = {r.value for r in CATALOG[name].networks}
        if not monitored:
            expected.discard(NetworkRole.monitoring.value)
        if CATALOG[name].host_network:
            expected = set()  # the host's namespace: no bridge of its own
        assert attached == expected, name
    c = containers(result)
    assert {n["name"] for n in c["socket-proxy"]["networksAdvanced"]} == {"mediastack-socket"}
    if "immich-postgres" in c:
        assert {n["name"] for n in c["immich-postgres"]["networksAdvanced"]} == {"mediastack-database"}


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_socket_proxy_reaches_docker_read_only(stack: str) -> None:
    sys.path.insert(0, str(ROOT / "policies"))
    from mediastack_policies.privileges import reached_socket

    for name, c in containers(plan(stack)).items():
        socket_mounts = [m for m in c.get("mounts", []) if reached_socket(m.get("source", ""))]
        if name == "socket-proxy":
            assert socket_mounts == [
                {"target": "/var/run/docker.sock", "type": "bind", "readOnly": True, "source": "/var/run/docker.sock"}
            ]
        elif name == "node-exporter":
            # The host's filesystem, read-only, as an unprivileged user: the socket (root:docker 0660) stays shut.
            assert [m["source"] for m in socket_mounts] == ["/"] and socket_mounts[0]["readOnly"]
            assert c["user"] == "65534:65534" and c["capabilities"]["drops"] == ["ALL"]
        else:
            assert socket_mounts == [], name
    traefik = containers(plan(stack))["traefik"]
    # Traefik's routes come from the program's file, not the Docker API: no provider that reads it, no socket network.
    assert "--providers.file.directory=/etc/traefik/dynamic" in traefik["command"]
    assert "--providers.file.watch=true" in traefik["command"]
    assert not any(a.startswith(("--providers.docker", "--providers.swarm")) for a in traefik["command"])
    assert "mediastack-socket" not in {n["name"] for n in traefik["networksAdvanced"]}
    assert [p["external"] for p in traefik["ports"]] == [80, 443]
    assert [n for n, c in containers(plan(stack)).items() if c.get("ports")] == ["traefik"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_socket_proxy_opens_only_what_cadvisor_reads(stack: str) -> None:
    c = containers(plan(stack))
    env = dict(line.split("=", 1) for line in c["socket-proxy"]["envs"])
    opened = sorted(k for k, v in env.items() if v == "1")
    readers = sorted(n for n, inputs in c.items() if any("socket-proxy:2375" in a for a in inputs.get("command") or []))
    if "cadvisor" in c:
        # cAdvisor's Docker handler: /info, /version and /containers/{id}/json; PING for the proxy's health check.
        assert opened == ["CONTAINERS", "INFO", "PING", "VERSION"] and readers == ["cadvisor"]
    else:  # no reader: nothing open but the proxy's own health check
        assert opened == ["PING"] and readers == []
    assert env["POST"] == "0" and env["EVENTS"] == "0" and env["SERVICES"] == "0" and env["NETWORKS"] == "0"


def test_cadvisor_mounts_only_what_it_reads() -> None:
    cadvisor = containers(plan("prod"))["cadvisor"]
    mounts = {m["source"]: (m["target"], m["readOnly"]) for m in cadvisor["mounts"]}
    assert mounts == {
        "/sys": ("/sys", True),
        "/proc": ("/rootfs/proc", True),
        "/var/lib/docker/image": ("/rootfs/var/lib/docker/image", True),
    }
    disabled = next(a for a in cadvisor["command"] if a.startswith("--disable_metrics="))
    assert "disk" in disabled.split("=", 1)[1].split(",")  # per-container disk usage walks the layers: off


@pytest.mark.parametrize("stack", STACKS)
def test_one_data_tree_for_arr_apps_and_download_clients(stack: str) -> None:
    data_root = raw_config(stack)["paths"]["data_root"]
    for name, c in containers(plan(stack)).items():
        if CATALOG[name].role in ("arr", "download_client") and CATALOG[name].writes_data_root:
            data = [m for m in c["mounts"] if m["target"] == "/data"]
            assert data == [{"target": "/data", "type": "bind", "readOnly": False, "source": data_root}], name
            assert not any(m["target"] in ("/downloads", "/movies", "/tv") for m in c["mounts"]), name


@pytest.mark.parametrize("stack", STACKS)
def test_linuxserver_identity(stack: str) -> None:
    ident = raw_config(stack)["identity"]
    for name, c in containers(plan(stack)).items():
        if CATALOG[name].linuxserver:
            envs = c["envs"] if isinstance(c["envs"], list) else []
            if c["envs"] == "[secret]":
                continue  # the *arr apps' env carries their API key: checked in test_secrets
            assert {
                f"PUID={ident['puid']}",
                f"PGID={ident['pgid']}",
                f"UMASK={ident['umask']}",
                f"TZ={ident['tz']}",
            } <= set(envs), name


def test_gpu_devices_follow_the_host() -> None:
    prod = containers(plan("prod"))  # intel
    for name in ("jellyfin", "tdarr-node"):
        assert prod[name]["devices"] == [{"hostPath": "/dev/dri", "containerPath": "/dev/dri", "permissions": "rwm"}]
        assert prod[name]["groupAdds"] == ["105"]
    assert "devices" not in prod["sonarr"]
    dev = containers(plan("dev"))  # none
    assert "devices" not in dev["jellyfin"] and "deviceRequests" not in dev["jellyfin"]
    cfg = raw_config("prod")
    cfg["hosts"][0].update(gpu="nvidia", render_gid=None)
    nvidia = containers(plan_config(cfg))
    assert nvidia["jellyfin"]["deviceRequests"] == [
        {"driver": "nvidia", "count": -1, "capabilities": ["gpu", "compute", "video", "utility"]}
    ]
    assert "devices" not in nvidia["jellyfin"]


def test_transcodes_on_tmpfs_or_cache() -> None:
    tmpfs = next(m for m in containers(plan("prod"))["jellyfin"]["mounts"] if m["target"] == "/transcode")
    assert tmpfs == {"target": "/transcode", "type": "tmpfs", "tmpfsOptions": {"mode": 0o755, "sizeBytes": 4 * 1024**3}}
    cfg = raw_config("prod")
    cfg["paths"]["transcode_tmpfs"] = None
    bound = next(m for m in containers(plan_config(cfg))["jellyfin"]["mounts"] if m["target"] == "/transcode")
    assert bound["source"] == "/srv/media/cache/jellyfin/transcodes"


@pytest.mark.parametrize("stack", STACKS)
def test_every_web_ui_is_routed_by_traefik(stack: str) -> None:
    domain = raw_config(stack)["domain"]
    http = traefik_dynamic(plan(stack))["http"]
    routers, services = http["routers"], http["services"]
    expected = {"artwork"} if "artwork-cache" in containers(plan(stack)) else set()
    for name, c in containers(plan(stack)).items():
        labels = container_labels(c)
        assert not any(k.startswith("traefik.") for k in labels), name  # routes live in the file only
        web = CATALOG[name].web
        if name == "artwork-cache":
            jellyfin = f"jellyfin.{domain}"
            artwork = routers["artwork"]
            assert artwork["rule"] == f"Host(`{jellyfin}`) && PathRegexp(`^/Items/[^/]+/Images/`)"
            assert artwork["priority"] > len(f"Host(`{jellyfin}`)")  # wins over Jellyfin's own router
            assert services["artwork"] == {"loadBalancer": {"servers": [{"url": "http://artwork-cache:8080"}]}}
            continue
        if web is None:
            continue
        expected.add(name)
        router = routers[name]
        assert router["rule"] == f"Host(`{web.subdomain}.{domain}`)"
        assert router["entryPoints"] == ["websecure"] and "tls" in router
        assert router["middlewares"][-1] == f"{name}-compress"
        assert http["middlewares"][f"{name}-compress"] == {"compress": {}}
        if name == "traefik":
            assert router["service"] == "api@internal"
        else:
            assert services[router["service"]] == {"loadBalancer": {"servers": [{"url": f"http://{name}:{web.port}"}]}}
            # Traefik reaches it by name on a network they share.
            attached = {n["name"] for n in c["networksAdvanced"]}
            assert f"mediastack-{web.via}" in attached, name
            traefik = {n["name"] for n in containers(plan(stack))["traefik"]["networksAdvanced"]}
            assert f"mediastack-{web.via}" in traefik, name
    # Public UIs also get a router without the allow-list, once their logins exist (tests/test_public_gate.py).
    public = {f"{n}-public" for n in expected if n in ("jellyfin", "immich-server", "seerr", "artwork")}
    assert set(routers) == expected | public


def test_secrets_never_appear_in_plain_text() -> None:
    result = plan("prod")
    generated = [r for r in result.resources if r.type.startswith("random:")]
    assert {r.name for r in generated} >= {"media-immich-db-password", "media-sonarr-api-key"}
    c = containers(result)
    # Each reads its secrets from files (the host step's stdin carries them), so no environment is a secret.
    for name in ("sonarr", "immich-server", "immich-postgres", "grafana", "postgres-exporter"):
        assert isinstance(c[name]["envs"], list) and "[secret]" not in c[name]["envs"], name
    step = next(r for r in result.resources if r.name == "media-nas-storage-secrets")
    assert step.inputs["stdin"] == "[secret]" and step.inputs["create"] == "sh -s"
    # The mock provider's generated values must not leak into the plan anywhere.
    from mediastack_cli.offline import _digest

    text = json.dumps(result.to_json())
    for r in generated:
        seed = _digest(f"{r.type}/{r.name}")
        assert seed[:24] not in text, r.name


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_host_scripts_are_replaced_delete_first(stack: str) -> None:
    # The old delete restores what was there before; after the new create it would undo the new one.
    commands = [r for r in plan(stack).resources if r.type.startswith("command:")]
    assert commands and all(r.delete_before_replace for r in commands), [r.name for r in commands]


def test_the_storage_step_creates_the_tree_and_reverts_it() -> None:
    # Ordering (containers after it) is asserted from recorded dependencies in test_ordering.py.
    result = plan("prod")
    commands = {r.name: r for r in result.resources if r.type == "command:remote:Command"}
    storage = commands["media-nas-storage-dirs"]
    assert storage.inputs["connection"] == "[secret]"  # pulumi-command keeps connections secret
    assert "/srv/media/config/jellyfin" in storage.inputs["create"]
    assert storage.inputs["delete"]
    dev = {r.name: r for r in plan("dev").resources if r.type == "command:local:Command"}
    assert "/srv/mediastack-dev/data/torrents/tv" in dev["media-dev-storage-dirs"].inputs["create"]


def test_generated_files_reach_their_containers() -> None:
    """Uploads where the rootfs is writable; a read-only bind of the directory the host step writes where not."""
    result = plan("prod")
    c = containers(result)
    assert c["grafana"]["uploads"][0]["file"].startswith("/etc/grafana/")
    for name in ("prometheus", "alertmanager", "blackbox-exporter"):
        assert c[name]["readOnly"] and not c[name].get("uploads"), name
    bind = next(m for m in c["prometheus"]["mounts"] if m["target"] == "/etc/prometheus")
    assert bind["readOnly"] and bind["source"].endswith("/generated/prometheus")
    files = next(r for r in result.resources if r.name.endswith("-files"))
    script = files.inputs["create"]
    assert f'"$ROOT"{bind["source"]}/prometheus.yml\n' in script
    assert f'"$ROOT"{bind["source"]}/rules/mediastack.yml\n' in script
    assert "job_name: jellyfin" in _written(script, f"{bind['source']}/prometheus.yml")
    prometheus = next(r for r in result.resources if r.type == CONTAINER and r.inputs["name"] == "prometheus")
    assert files.urn in dependencies_expanded(result, prometheus), "the files are written before Prometheus starts"


def _written(script: str, path: str) -> str:
    """The content the files script writes to `path` (base64 in a here-document)."""
    import base64

    block = script.split(f'"$ROOT"{path}\n', 1)[1].split("<<'MEDIASTACK_FILE'\n", 1)[1].split("MEDIASTACK_FILE", 1)[0]
    return base64.b64decode(block).decode()


def test_a_new_catalog_entry_is_deployed_from_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from mediastack.catalog import services as catalog
    from mediastack.plan import resolve

    extra = replace(
        catalog.CATALOG["bazarr"],
        name="lidarr",
        image="lscr.io/linuxserver/lidarr",
        tag="2.13.3",
        web=catalog.WebUI(8686, "lidarr"),
    )
    monkeypatch.setitem(catalog.CATALOG, "lidarr", extra)
    monkeypatch.setattr(resolve, "CATALOG", catalog.CATALOG)
    result = plan_config(raw_config("prod"), stack="extra")
    c = containers(result)
    assert c["lidarr"]["image"].startswith("lscr.io/linuxserver/lidarr@sha256:")
    lidarr = traefik_dynamic(result)["http"]["routers"]["lidarr"]
    assert lidarr["rule"] == "Host(`lidarr.media.example.org`)"
    assert lidarr["middlewares"] == ["lidarr-lan", "lidarr-compress"]  # no login stated: LAN-only
    assert any(r.type == CONTAINER for r in plan("prod").resources)


def test_the_program_itself_stops_on_bad_config_before_any_resource() -> None:
    """Under `pulumi up` the CLI pre-check does not exist: __main__.py must stop cleanly on its own."""
    import pulumi

    cfg = raw_config("dev")
    cfg["hosts"][0]["gpu"] = "radeon"
    with pytest.raises(pulumi.RunError) as caught:
        plan_config(cfg, stack="broken")
    assert str(caught.value).startswith("stack 'broken': 1 config problem in Pulumi.broken.yaml")
    assert "mediastack:hosts[0].gpu = 'radeon'" in str(caught.value)


def test_redis_cache_is_bounded_below_its_container_limit() -> None:
    redis = containers(plan("prod"))["redis"]
    maxmemory = int(redis["command"][redis["command"].index("--maxmemory") + 1])
    assert maxmemory == redis["memory"] * MIB * 3 // 4
    assert "allkeys-lru" in redis["command"]


@pytest.mark.parametrize("stack", STACKS)
def test_only_jellyfin_immich_and_seerr_are_public(stack: str) -> None:
    """As shipped, no admin page answers to the internet: every router but Jellyfin's, Immich's, Seerr's and the
    artwork cache's (Jellyfin's images) allows only the LAN ranges."""
    http = traefik_dynamic(plan(stack))["http"]
    lan = raw_config(stack).get("lan_ranges") or (
        ["172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]
        if len(raw_config(stack)["hosts"]) > 1
        else ["10.0.0.0/8", "172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]
    )
    public = set()
    for name, router in http["routers"].items():
        chain = router.get("middlewares", [])
        allow = [http["middlewares"][m]["ipAllowList"] for m in chain if "ipAllowList" in http["middlewares"][m]]
        if not allow:
            public.add(name.removesuffix("-public"))  # opened once the logins exist (tests/test_public_gate.py)
            continue
        assert chain[0] == f"{name}-lan", name  # the allow-list runs first
        assert allow == [{"sourceRange": lan}], name
    enabled = containers(plan(stack))
    routed = {*enabled, "artwork"} if "artwork-cache" in enabled else set(enabled)
    assert public == {"jellyfin", "immich-server", "seerr", "artwork"} & routed
    for name in public - {"artwork"}:
        assert container_labels(enabled[name])["mediastack.login"] == "accounts", name
    for name, c in enabled.items():
        labels = container_labels(c)
        if "mediastack.web-port" in labels:
            assert labels["mediastack.exposure"] == ("public" if name in public else "lan"), name


def test_a_private_jellyfin_keeps_its_images_private() -> None:
    cfg = raw_config("prod")
    cfg["exposure"] = {"public": ["immich-server"]}
    http = traefik_dynamic(plan_config(cfg, stack="private"))["http"]
    assert http["routers"]["jellyfin"]["middlewares"] == ["jellyfin-lan", "jellyfin-compress"]
    assert http["routers"]["artwork"]["middlewares"] == ["artwork-lan"]  # the cache is as reachable as Jellyfin


def test_download_clients_leave_through_the_shaped_bridge() -> None:
    result = plan("prod")
    nets = {r.inputs["name"]: r.inputs for r in result.resources if r.type == "docker:index/network:Network"}
    assert nets["mediastack-downloads"]["options"] == {"com.docker.network.bridge.name": "ms-downloads"}
    assert nets["mediastack-downloads"]["internal"] is False
    c = containers(result)
    for name, container in c.items():
        gateways = [n["name"] for n in container["networksAdvanced"] if n.get("gwPriority")]
        if CATALOG[name].role == "download_client":
            assert gateways == ["mediastack-downloads"], name
            assert container_labels(container)["mediastack.bandwidth-down"] == "400mbit"
            assert container_labels(container)["mediastack.bandwidth-up"] == "16mbit"
        else:
            assert gateways == [], name


def test_shaping_is_applied_on_hosts_with_a_link_only() -> None:
    commands = {r.name: r for r in plan("prod").resources if r.type == "command:remote:Command"}
    qos = commands["media-nas-tuning-qos"]
    assert "IFACE=enp3s0" in qos.inputs["create"] and "ceil 16mbit prio 1" in qos.inputs["create"]
    assert "mediastack-qos clear" in qos.inputs["delete"]
    # A new downloads bridge (the network replaced) loses its qdisc: its id is a trigger, so shaping re-applies.
    assert len(qos.inputs["triggers"]) == 3 and qos.inputs["triggers"][2].startswith("media-downloads-network")
    dev = plan("dev")
    assert not [r for r in dev.resources if r.name.endswith("-qos")]
    # Without a link the clients still carry their limits (set in the apps themselves).
    dev_c = containers(dev)
    assert container_labels(dev_c["qbittorrent"])["mediastack.bandwidth-up"] == "10mbit"
