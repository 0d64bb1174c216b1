"""The policy pack, exercised through the analyzer gRPC protocol the Pulumi CLI uses.

One pack process serves the module (started from its own entry point, as the CLI starts it). Every
policy gets a compliant and a violating case, on the Container and the Swarm Service shape where it
applies; a few plain-Python tests cover the helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from conftest import CONTAINER, ROOT, containers, edit_host_files, plan, plan_config, raw_config
from mediastack.catalog.services import BUNDLES
from mediastack_cli.analyzer import LEVELS, PolicyPack, PolicyPackError, run_pack
from mediastack_cli.offline import SECRET_MASK, SECRET_SIG, SECRET_VALUE, Registration

sys.path.insert(0, str(ROOT / "policies"))
from mediastack_policies.resource import image_problem
from mediastack_policies.shapes import from_container, from_service, seconds

SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
LOCAL_COMMAND = "command:local:Command"


def reg(type_: str, props: dict[str, Any], name: str = "r") -> Registration:
    return Registration(
        urn=f"urn:pulumi:test::mediastack::{type_}::{name}", type=type_, name=name, parent="", custom=True, inputs=props
    )


def found(response) -> set[str]:
    return {d.policyName for d in response.diagnostics}


def analyze(pack: PolicyPack, type_: str, props: dict[str, Any]) -> set[str]:
    return found(pack.analyze(reg(type_, props)))


def analyze_stack(pack: PolicyPack, resources: list[Registration]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for d in pack.analyze_stack(resources).diagnostics:
        result.setdefault(d.policyName, []).append(d.message)
    return result


# -- compliant bases, taken from the program's own output --------------------------------------------


def base_container() -> dict[str, Any]:
    return copy.deepcopy(containers(plan("prod"))["sonarr"])


def base_critical() -> dict[str, Any]:
    return copy.deepcopy(containers(plan("prod"))["jellyfin"])


def base_service() -> dict[str, Any]:
    """A Swarm service as the multi-node rendering will produce it (camelCase inputs)."""
    c = base_container()
    labels = c["labels"]
    return {
        "name": "sonarr",
        "labels": labels,
        "taskSpec": {
            "containerSpec": {
                "image": c["image"],
                "env": {"PUID": "1000", "PGID": "1000", "UMASK": "002", "SONARR__AUTH__APIKEY": SECRET_MASK},
                "mounts": [
                    {"type": "bind", "source": m["source"], "target": m["target"], "readOnly": False}
                    for m in c["mounts"]
                ],
                "healthcheck": c["healthcheck"],
                "capAdds": c["capabilities"]["adds"],
                "capDrops": ["ALL"],
                "labels": labels,
            },
            "resources": {
                "limits": {"memoryBytes": 2 * 1024**3, "nanoCpus": 2_000_000_000},
                "reservation": {"memoryBytes": 512 * 1024**2, "nanoCpus": 250_000_000},
            },
            "restartPolicy": {"condition": "any", "maxAttempts": 0},
            "logDriver": {"name": "local", "options": {"max-size": "10m", "max-file": "5"}},
            "networksAdvanceds": [{"name": "mediastack-frontend"}, {"name": "mediastack-backend"}],
        },
        "mode": {"replicated": {"replicas": 1}},
    }


def with_(props: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**props, **changes}


def without(props: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in keys}


def task(props: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted path inside a service's inputs (None deletes it)."""
    props = copy.deepcopy(props)
    node = props
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return props


SOCKET = {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock", "readOnly": True}

CONTAINER_CASES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("resource-limits", lambda: without(base_container(), "memory")),
    ("resource-limits", lambda: without(base_container(), "cpus")),
    ("resource-limits", lambda: with_(base_container(), cpus="8")),  # above the standard tier's bound
    ("memory-reservation", lambda: without(base_container(), "memoryReservation")),
    ("memory-reservation", lambda: with_(base_container(), memoryReservation=4096)),
    ("health-check", lambda: without(base_container(), "healthcheck")),
    (
        "health-check",
        lambda: with_(
            base_container(), healthcheck={**base_container()["healthcheck"], "timeout": "45s", "interval": "30s"}
        ),
    ),
    ("health-check", lambda: with_(base_container(), healthcheck={**base_container()["healthcheck"], "retries": 0})),
    ("health-check", lambda: with_(base_container(), healthcheck={"tests": ["NONE"]})),
    ("image-pinned", lambda: with_(base_container(), image="lscr.io/linuxserver/sonarr:latest", labels=[])),
    ("image-pinned", lambda: with_(base_container(), image="registry:5000/sonarr", labels=[])),
    ("no-privileged", lambda: with_(base_container(), privileged=True)),
    ("no-host-namespaces", lambda: with_(base_container(), networkMode="host")),
    ("no-host-namespaces", lambda: with_(base_container(), pidMode="host")),
    ("no-host-namespaces", lambda: with_(base_container(), ipcMode="host")),
    ("docker-socket-via-proxy", lambda: with_(base_container(), mounts=[*base_container()["mounts"], SOCKET])),
    (
        "docker-socket-via-proxy",
        lambda: with_(copy.deepcopy(containers(plan("prod"))["socket-proxy"]), mounts=[{**SOCKET, "readOnly": False}]),
    ),
    ("no-new-privileges", lambda: with_(base_container(), securityOpts=[])),
    (
        "capabilities-allow-list",
        lambda: with_(base_container(), capabilities={"drops": ["ALL"], "adds": ["SYS_ADMIN"]}),
    ),
    ("capabilities-allow-list", lambda: with_(base_container(), capabilities={"drops": ["ALL"], "adds": ["NET_RAW"]})),
    ("capabilities-allow-list", lambda: with_(base_container(), capabilities={"adds": ["CHOWN"]})),
    ("restart-policy", lambda: without(base_container(), "restart")),
    ("restart-policy", lambda: with_(base_container(), restart="on-failure", maxRetryCount=50)),
    ("log-rotation", lambda: without(base_container(), "logDriver", "logOpts")),  # json-file, unbounded
    ("log-rotation", lambda: with_(base_container(), logOpts={"max-size": "5g", "max-file": "5"})),
    ("critical-no-swap", lambda: without(base_critical(), "memorySwap")),
    ("host-ports-proxy-only", lambda: with_(base_container(), ports=[{"internal": 8989, "external": 8989}])),
    ("secret-env", lambda: with_(base_container(), envs=["PUID=1000", "DB_PASSWORD=hunter2"])),
    ("secret-env", lambda: with_(base_container(), envs=["SONARR__AUTH__APIKEY=0123456789abcdef"])),
]

SERVICE_CASES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("resource-limits", lambda: task(base_service(), "taskSpec.resources.limits.memoryBytes", None)),
    ("resource-limits", lambda: task(base_service(), "taskSpec.resources.limits.nanoCpus", None)),
    ("memory-reservation", lambda: task(base_service(), "taskSpec.resources.reservation", None)),
    ("health-check", lambda: task(base_service(), "taskSpec.containerSpec.healthcheck", None)),
    (
        "image-pinned",
        lambda: task(
            task(base_service(), "taskSpec.containerSpec.image", "sonarr:latest"), "taskSpec.containerSpec.labels", []
        ),
    ),
    ("docker-socket-via-proxy", lambda: task(base_service(), "taskSpec.containerSpec.mounts", [SOCKET])),
    ("capabilities-allow-list", lambda: task(base_service(), "taskSpec.containerSpec.capAdds", ["SYS_ADMIN"])),
    ("restart-policy", lambda: task(base_service(), "taskSpec.restartPolicy.condition", "none")),
    ("log-rotation", lambda: task(base_service(), "taskSpec.logDriver.options", {"max-size": "10g"})),
    (
        "host-ports-proxy-only",
        lambda: task(base_service(), "endpointSpec", {"ports": [{"publishedPort": 8989, "targetPort": 8989}]}),
    ),
    ("secret-env", lambda: task(base_service(), "taskSpec.containerSpec.env", {"API_TOKEN": "plain"})),
]


# What each case's violation must say (in case order), so a policy that fires for the wrong reason fails.
CONTAINER_MESSAGES: list[str] = [
    "sonarr: no memory limit; set one from the service's tier",
    "sonarr: no CPU limit",
    "CPU limit 8 is above the standard tier's bound 4",
    "sonarr: no memory reservation",
    "memory reservation 4096 MiB is above its limit 2048 MiB",
    "sonarr: no health check; add one on the app's own endpoint",
    "health check timeout 45.0s must be set, below the interval",
    "health check retries 0 outside 1.0-10.0",
    "sonarr: no health check",
    "lscr.io/linuxserver/sonarr:latest uses `latest`; pin a version",
    "registry:5000/sonarr has no tag",
    "sonarr: runs privileged",
    "shares the host's network namespace",
    "shares the host's PID namespace",
    "shares the host's IPC namespace",
    "sonarr: mounts /var/run/docker.sock, which reaches /var/run/docker.sock; only the socket proxy may reach",
    "socket-proxy: mounts /var/run/docker.sock read-write; mount it read-only",
    "sonarr: no-new-privileges is not set",
    "sonarr: adds SYS_ADMIN, which gives away the host",
    "adds capability NET_RAW, not in the allow-list",
    "does not drop ALL capabilities",
    "restart policy None; use one of unless-stopped, always, on-failure",
    "on-failure retries 50.0 above 5.0",
    "json-file logs without max-size grow without bound",
    "log max-size 5g is above 100.0m",
    "jellyfin: critical-tier container can swap; set memory_swap equal to memory",
    "sonarr: publishes 8989 on the host",
    "environment variable DB_PASSWORD looks like a secret but is plain",
    "environment variable SONARR__AUTH__APIKEY looks like a secret but is plain",
]


# What each case's violation must say (in case order), so a policy that fires for the wrong reason fails.
SERVICE_MESSAGES: list[str] = [
    "sonarr: no memory limit",
    "sonarr: no CPU limit",
    "sonarr: no memory reservation",
    "sonarr: no health check",
    "image sonarr:latest uses `latest`",
    "sonarr: mounts /var/run/docker.sock",
    "sonarr: adds SYS_ADMIN, which gives away the host",
    "restart policy 'none'; use one of any, on-failure",
    "log max-size 10g is above 100.0m",
    "sonarr: publishes 8989 on the host",
    "environment variable API_TOKEN looks like a secret but is plain",
]


def test_the_bases_are_compliant(pack: PolicyPack) -> None:
    assert analyze(pack, CONTAINER, base_container()) == set()
    assert analyze(pack, CONTAINER, base_critical()) == set()
    assert analyze(pack, SERVICE, base_service()) == set()


def test_only_node_exporter_gets_the_hosts_network_and_only_that(pack: PolicyPack) -> None:
    node = copy.deepcopy(containers(plan("prod"))["node-exporter"])
    assert node["networkMode"] == "host"
    assert "no-host-namespaces" not in analyze(pack, CONTAINER, node)
    assert "no-host-namespaces" in analyze(pack, CONTAINER, with_(node, pidMode="host"))
    assert "no-host-namespaces" in analyze(pack, CONTAINER, with_(base_container(), networkMode="host"))


def messages(pack: PolicyPack, type_: str, props: dict[str, Any], policy: str) -> list[str]:
    return [d.message for d in pack.analyze(reg(type_, props)).diagnostics if d.policyName == policy]


@pytest.mark.parametrize(
    ("policy", "make", "says"),
    [(p, m, says) for (p, m), says in zip(CONTAINER_CASES, CONTAINER_MESSAGES, strict=True)],
    ids=[f"{p}-{i}" for i, (p, _) in enumerate(CONTAINER_CASES)],
)
def test_container_violations(pack: PolicyPack, policy: str, make, says: str) -> None:
    found = messages(pack, CONTAINER, make(), policy)
    assert any(says in m for m in found), found


@pytest.mark.parametrize(
    ("policy", "make", "says"),
    [(p, m, says) for (p, m), says in zip(SERVICE_CASES, SERVICE_MESSAGES, strict=True)],
    ids=[f"{p}-{i}" for i, (p, _) in enumerate(SERVICE_CASES)],
)
def test_service_violations(pack: PolicyPack, policy: str, make, says: str) -> None:
    found = messages(pack, SERVICE, make(), policy)
    assert any(says in m for m in found), found


def test_a_secret_env_value_passes_as_a_pulumi_secret(pack: PolicyPack) -> None:
    """The same variable is fine once it travels as a secret (the pack keeps secretness through the protocol)."""
    plain = with_(base_container(), envs=["DB_PASSWORD=hunter2"])
    assert "secret-env" in analyze(pack, CONTAINER, plain)
    secret = with_(base_container(), envs=["PUID=1000", SECRET_MASK])
    assert "secret-env" not in analyze(pack, CONTAINER, secret)
    whole = with_(base_container(), envs=SECRET_MASK)
    assert "secret-env" not in analyze(pack, CONTAINER, whole)
    # A variable that names the file holding the secret (Homepage's HOMEPAGE_FILE_ prefix) is not the secret.
    named = with_(base_container(), envs=["HOMEPAGE_FILE_SONARR_KEY=/app/config/keys/sonarr-key"])
    assert "secret-env" not in analyze(pack, CONTAINER, named)
    named = with_(base_container(), envs=["HOMEPAGE_FILE_GRAFANA_PASSWORD=/app/config/keys/grafana-password"])
    assert "secret-env" not in analyze(pack, CONTAINER, named)
    assert "secret-env" in analyze(pack, CONTAINER, with_(base_container(), envs=["HOMEPAGE_PASSWORD=hunter2"]))
    # A value that is only a secret file's path, as Unpackerr takes it behind `filepath:`, is not the secret.
    path = with_(base_container(), envs=["UN_SONARR_0_API_KEY=filepath:/run/secrets/sonarr-api-key"])
    assert "secret-env" not in analyze(pack, CONTAINER, path)
    for value in ("filepath:0123456789abcdef", "filepath:/run/secrets/k x", "/run/secrets/../etc/k"):
        found = messages(pack, CONTAINER, with_(base_container(), envs=[f"UN_SONARR_0_API_KEY={value}"]), "secret-env")
        assert any("UN_SONARR_0_API_KEY looks like a secret but is plain" in m for m in found), (value, found)


def real_secret(value: Any) -> dict[str, Any]:
    """A value as the engine sends a Pulumi secret: the signature object around the real value (not the mask)."""
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def test_a_real_secret_is_told_from_the_same_plain_value(pack: PolicyPack) -> None:
    line = "DB_PASSWORD=hunter2-real-value"
    plain = pack.analyze(reg(CONTAINER, with_(base_container(), envs=["PUID=1000", line])))
    (message,) = [d.message for d in plain.diagnostics if d.policyName == "secret-env"]
    assert "DB_PASSWORD" in message
    one = with_(base_container(), envs=["PUID=1000", real_secret(line)])
    assert "secret-env" not in analyze(pack, CONTAINER, one)
    whole = with_(base_container(), envs=real_secret(["PUID=1000", line]))
    assert "secret-env" not in analyze(pack, CONTAINER, whole)
    service = task(base_service(), "taskSpec.containerSpec.env", {"PUID": "1000", "DB_PASSWORD": real_secret("x1")})
    assert "secret-env" not in analyze(pack, SERVICE, service)
    assert "secret-env" in analyze(pack, SERVICE, task(service, "taskSpec.containerSpec.env", {"DB_PASSWORD": "x1"}))


def test_digest_required_when_configured(pack: PolicyPack) -> None:
    try:
        pack.configure({"image-pinned": {"require_digest": True}})
        assert "image-pinned" in analyze(pack, CONTAINER, base_container())  # tag pin in its label, no digest
        digested = with_(
            base_container(),
            labels=[{"label": "mediastack.image", "value": "lscr.io/linuxserver/sonarr@sha256:" + "a" * 64}],
        )
        assert "image-pinned" not in analyze(pack, CONTAINER, digested)
    finally:
        pack.configure({})


def test_network_and_command_policies(pack: PolicyPack) -> None:
    internal = {
        "name": "mediastack-database",
        "internal": True,
        "labels": [{"label": "mediastack.network", "value": "database"}],
    }
    assert analyze(pack, NETWORK, internal) == set()
    assert "internal-networks" in analyze(pack, NETWORK, with_(internal, internal=False))
    assert analyze(pack, NETWORK, {"name": "mediastack-frontend", "internal": False}) == set()
    command = {"create": "sysctl -w vm.swappiness=10", "delete": "sysctl -w vm.swappiness=60"}
    assert analyze(pack, LOCAL_COMMAND, command) == set()
    assert "host-commands-revert" in analyze(pack, LOCAL_COMMAND, without(command, "delete"))
    assert "host-commands-revert" in analyze(pack, "command:remote:Command", without(command, "delete"))


# -- stack policies ---------------------------------------------------------------------------------


def prod_resources() -> list[Registration]:
    return [copy.deepcopy(r) for r in plan("prod").resources if r.custom]


def replace_container(resources: list[Registration], name: str, props: dict[str, Any]) -> list[Registration]:
    return [
        reg(r.type, props, r.name) if r.type == CONTAINER and r.inputs.get("name") == name else r for r in resources
    ]


def labelled(props: dict[str, Any], **labels: str) -> dict[str, Any]:
    current = {item["label"]: item["value"] for item in props["labels"]}
    current.update(labels)
    return with_(props, labels=[{"label": k, "value": v} for k, v in current.items()])


def test_prod_stack_passes_every_mandatory_stack_policy(pack: PolicyPack) -> None:
    response = pack.analyze_stack(prod_resources())
    assert [d.policyName for d in response.diagnostics if d.enforcementLevel == 1] == []


def radarr_mounts(resources: list[Registration], *mounts: tuple[str, str]) -> list[Registration]:
    """The prod stack with Radarr's mounts replaced by (source, target) binds."""
    binds = [{"type": "bind", "source": src, "target": dst, "readOnly": False} for src, dst in mounts]
    return replace_container(resources, "radarr", with_(containers(plan("prod"))["radarr"], mounts=binds))


STACK_CASES: list[tuple[str, Callable[[list[Registration]], list[Registration]]]] = [
    (
        "host-capacity",
        lambda rs: replace_container(
            rs, "sonarr", with_(containers(plan("prod"))["sonarr"], memoryReservation=30 * 1024)
        ),
    ),
    (
        "every-service-monitored",
        lambda rs: [
            *rs,
            reg(CONTAINER, labelled(with_(base_container(), name="lidarr"), **{"mediastack.service": "lidarr"}), "x"),
        ],
    ),
    ("web-ui-routed", lambda rs: without_router(rs, "sonarr")),
    (
        "download-bandwidth-limit",
        lambda rs: replace_container(
            rs,
            "qbittorrent",
            with_(
                containers(plan("prod"))["qbittorrent"],
                labels=[
                    lb
                    for lb in containers(plan("prod"))["qbittorrent"]["labels"]
                    if not lb["label"].startswith("mediastack.bandwidth")
                ],
            ),
        ),
    ),
    (
        "unique-host-ports",
        lambda rs: replace_container(rs, "sonarr", with_(base_container(), ports=[{"internal": 443, "external": 443}])),
    ),
    ("hardlinks-work", lambda rs: radarr_mounts(rs, ("/srv/downloads", "/downloads"), ("/srv/movies", "/movies"))),
    ("hardlinks-work", lambda rs: radarr_mounts(rs, ("/mnt/other", "/data"))),
    (
        "one-identity",
        lambda rs: replace_container(
            rs,
            "qbittorrent",
            labelled(containers(plan("prod"))["qbittorrent"], **{"mediastack.identity": "1001:1001:022"}),
        ),
    ),
    (
        "render-group",
        lambda rs: replace_container(rs, "jellyfin", without(containers(plan("prod"))["jellyfin"], "groupAdds")),
    ),
    (
        "data-services-internal",
        lambda rs: replace_container(
            rs,
            "immich-postgres",
            with_(containers(plan("prod"))["immich-postgres"], networksAdvanced=[{"name": "mediastack-frontend"}]),
        ),
    ),
    (
        "vpn-no-bypass",
        lambda rs: [
            *rs,
            reg(CONTAINER, labelled(with_(base_container(), name="gluetun"), **{"mediastack.role": "vpn"}), "vpn"),
        ],
    ),
    ("stateful-services-backed-up", lambda rs: without_backups(rs)),
    ("stateful-services-backed-up", lambda rs: backups_covering(rs, drop="sonarr")),
    (
        "stateful-services-backed-up",
        lambda rs: [
            *rs,
            reg(CONTAINER, labelled(with_(base_container(), name="lidarr"), **{"mediastack.service": "lidarr"}), "x"),
        ],
    ),
]


def without_router(resources: list[Registration], router: str) -> list[Registration]:
    """The stack with one router taken out of Traefik's generated dynamic config."""
    result = []

    def drop(text: str) -> str:
        doc = yaml.safe_load(text)
        doc["http"]["routers"].pop(router, None)
        return yaml.safe_dump(doc)

    for r in resources:
        if r.type.startswith("command:") and isinstance(r.inputs.get("create"), str):
            r = reg(r.type, with_(r.inputs, create=edit_host_files(r.inputs["create"], drop)), r.name)
        result.append(r)
    return result


def without_backups(resources: list[Registration]) -> list[Registration]:
    return [r for r in resources if "backups" not in r.name]


def backups_covering(resources: list[Registration], drop: str = "", exclude: str = "") -> list[Registration]:
    """The prod stack with the backup command's covered list changed."""
    result = []
    for r in resources:
        if r.name.endswith("-backups-install"):
            triggers = []
            for t in r.inputs["triggers"]:
                if str(t).startswith("mediastack.backup.covers="):
                    names = [n for n in t.split("=", 1)[1].split(",") if n not in (drop, exclude)]
                    t = "mediastack.backup.covers=" + ",".join(names) + (f";excluded={exclude}" if exclude else "")
                triggers.append(t)
            r = reg(r.type, with_(r.inputs, triggers=triggers), r.name)
        result.append(r)
    return result


def test_stateful_services_backed_up_accepts_what_the_config_excludes(pack: PolicyPack) -> None:
    resources = prod_resources()
    assert "stateful-services-backed-up" not in analyze_stack(pack, resources)
    # Immich's library left out by backups.include_photos: false is a decision the plan shows, not a gap.
    assert "stateful-services-backed-up" not in analyze_stack(
        pack, backups_covering(resources, exclude="immich-server")
    )
    (message,) = analyze_stack(pack, without_backups(resources))["stateful-services-backed-up"]
    assert "no backups in this stack" in message and "set mediastack:backups.repository" in message
    assert "sonarr (sqlite)" in message and "immich-postgres (postgres)" in message
    assert "immich-redis (redis)" in message and message.count("redis (") == 1  # the cache has no state
    dropped = analyze_stack(pack, backups_covering(resources, drop="sonarr"))["stateful-services-backed-up"]
    assert any("sonarr: keeps sqlite state that the backups do not cover" in m for m in dropped)
    try:
        pack.configure({"stateful-services-backed-up": {"allow_uncovered": ["sonarr"]}})
        assert "stateful-services-backed-up" not in analyze_stack(pack, backups_covering(resources, drop="sonarr"))
    finally:
        pack.configure({})


# What each case's violation must say (in case order), so a policy that fires for the wrong reason fails.
STACK_MESSAGES: list[str] = [
    "host nas: memory reservations total 40.2 GiB, above the 27.9 GiB left after the host reserve and 10% headroom",
    "lidarr: neither scraped nor probed by Prometheus",
    "sonarr: web UI on port 8989 is not routed through the reverse proxy",
    "qbittorrent: download client without a bandwidth limit (down and up)",
    "host nas: port 443 is published by sonarr, traefik",
    "radarr: separate /downloads, /movies mounts make imports copies, not hardlinks",
    "mount different data roots, so hardlinks fail: /mnt/other -> /data: radarr",
    "PUID=1001 PGID=1001 UMASK=022: qbittorrent",
    "jellyfin: has /dev/dri without the host's render group",
    "immich-postgres: a database container on non-internal network(s) mediastack-frontend",
    "qbittorrent: has a network path that bypasses the VPN",
    "no backups in this stack",
    "sonarr: keeps sqlite state that the backups do not cover",
    "lidarr: keeps sqlite state that the backups do not cover",
]


@pytest.mark.parametrize(
    ("policy", "break_it", "says"),
    [(p, b, says) for (p, b), says in zip(STACK_CASES, STACK_MESSAGES, strict=True)],
    ids=[f"{p}-{i}" for i, (p, _) in enumerate(STACK_CASES)],
)
def test_stack_violations(pack: PolicyPack, policy: str, break_it, says: str) -> None:
    before = analyze_stack(pack, prod_resources()).get(policy, [])
    after = analyze_stack(pack, break_it(prod_resources())).get(policy, [])
    new = [m for m in after if m not in before]
    assert any(says in m for m in new), after


def test_stack_compliant_cases_for_advisory_policies(pack: PolicyPack) -> None:
    resources = prod_resources()
    limited = [
        reg(
            r.type,
            labelled(r.inputs, **{"mediastack.bandwidth-down": "50mbit", "mediastack.bandwidth-up": "10mbit"}),
            r.name,
        )
        if r.type == CONTAINER and r.inputs["name"] in ("qbittorrent", "sabnzbd")
        else r
        for r in resources
    ]
    assert "download-bandwidth-limit" not in analyze_stack(pack, limited)
    vpn = reg(CONTAINER, labelled(with_(base_container(), name="gluetun"), **{"mediastack.role": "vpn"}), "vpn")
    through = [
        reg(r.type, with_(r.inputs, networkMode="container:gluetun", networksAdvanced=[]), r.name)
        if r.type == CONTAINER and r.inputs["name"] in ("qbittorrent", "sabnzbd")
        else r
        for r in resources
    ]
    assert "vpn-no-bypass" not in analyze_stack(pack, [*through, vpn])


def test_remediation_adds_log_rotation(pack: PolicyPack) -> None:
    try:
        pack.configure({"log-rotation": "remediate"})
        response = pack.remediate(reg(CONTAINER, without(base_container(), "logDriver", "logOpts")))
        (remediation,) = response.remediations
        assert remediation.policyName == "log-rotation"
        props = json_format.MessageToDict(remediation.properties)
        assert props["logDriver"] == "local" and props["logOpts"] == {"max-size": "10m", "max-file": "5"}
        assert not pack.remediate(reg(CONTAINER, base_container())).remediations
    finally:
        pack.configure({})


# -- config, levels and the plan end to end --------------------------------------------------------


def test_pack_describes_itself(pack: PolicyPack) -> None:
    assert pack.info is not None and pack.info.name == "mediastack"
    assert pack.version == yaml.safe_load((ROOT / "policies/PulumiPolicy.yaml").read_text())["version"]
    levels = {p.name: p.enforcementLevel for p in pack.info.policies}
    assert levels["privileged" if "privileged" in levels else "no-privileged"] == 1  # mandatory
    assert levels["every-service-monitored"] == 0 and levels["download-bandwidth-limit"] == 0  # advisory
    assert len(levels) >= 26


def test_bad_pack_config_is_refused(pack: PolicyPack) -> None:
    with pytest.raises(PolicyPackError, match="unknown policies: no-such-policy"):
        pack.configure({"no-such-policy": "mandatory"})
    with pytest.raises(PolicyPackError, match=r"health-check.max_retries = 'ten': expected integer"):
        pack.configure({"health-check": {"max_retries": "ten"}})
    with pytest.raises(PolicyPackError, match="level 'fatal'"):
        pack.configure({"all": "fatal"})
    pack.configure({})


def test_the_vpn_container_may_administer_its_own_network_namespace_only(pack: PolicyPack) -> None:
    gluetun = copy.deepcopy(containers(plan("home"))["gluetun"])
    assert gluetun["capabilities"]["adds"] == ["NET_ADMIN"]
    assert "capabilities-allow-list" not in analyze(pack, CONTAINER, gluetun)
    on_host = messages(pack, CONTAINER, with_(gluetun, networkMode="host"), "capabilities-allow-list")
    assert any("gluetun: adds NET_ADMIN, which gives away the host" in m for m in on_host), on_host
    sonarr = with_(base_container(), capabilities={"drops": ["ALL"], "adds": ["NET_ADMIN"]})
    assert any(
        "adds NET_ADMIN, which gives away the host" in m
        for m in messages(pack, CONTAINER, sonarr, "capabilities-allow-list")
    )


def test_uis_behind_the_vpn_are_routed_on_its_container(pack: PolicyPack) -> None:
    resources = [copy.deepcopy(r) for r in plan("home").resources if r.custom]
    assert "web-ui-routed" not in analyze_stack(pack, resources)
    broken = without_router(resources, "qbittorrent")
    found = [m.split("\n", 1)[-1] for m in analyze_stack(pack, broken)["web-ui-routed"]]
    assert found == ["qbittorrent: web UI on port 8090 is not routed through the reverse proxy"], found


def test_the_vpn_is_known_by_the_id_its_clients_name(pack: PolicyPack) -> None:
    """The clients name gluetun by its id (what Docker stores and the provider reads back): the pack knows that id
    as the VPN's from the input's property dependency (preview, mocks: the id comes from gluetun's outputs) or from
    the id gluetun's own outputs show (after `up`); any other namespace is a way around the tunnel."""
    from pulumi.runtime import rpc

    resources = [copy.deepcopy(r) for r in plan("home").resources if r.custom]
    by_name = {r.inputs["name"]: r for r in resources if r.type == CONTAINER}
    gluetun, sonarr = by_name["gluetun"], by_name["sonarr"]
    clients = {"qbittorrent", "sabnzbd"}
    for client in clients:
        assert by_name[client].inputs["networkMode"] == f"container:{gluetun.id}"
        assert by_name[client].property_dependencies["networkMode"] == (gluetun.urn,)
    assert "vpn-no-bypass" not in analyze_stack(pack, resources)

    def clients_with(mode: str, made_from: tuple[str, ...], vpn_id: str = "") -> list[Registration]:
        changed = []
        for r in resources:
            if r.type == CONTAINER and r.inputs["name"] in clients:
                r = dataclasses.replace(r, inputs=with_(r.inputs, networkMode=mode), property_dependencies={})
                if made_from:
                    r.property_dependencies = {"networkMode": made_from}
            elif r is gluetun and vpn_id:
                r = dataclasses.replace(r, inputs=with_(r.inputs, id=vpn_id))
            changed.append(r)
        return changed

    engine_id = "4f1c2b" * 10 + "abcd"
    # A first deploy's preview: gluetun's id is not known yet, nor is the whole input made from it.
    assert "vpn-no-bypass" not in analyze_stack(pack, clients_with(rpc.UNKNOWN, (gluetun.urn,)))
    # After `up`: the id Docker gave gluetun, as its outputs show it and as the clients' input reads it back.
    assert "vpn-no-bypass" not in analyze_stack(pack, clients_with(f"container:{engine_id}", (), vpn_id=engine_id))
    # Another container's namespace, by its id made from its outputs, or an id nothing in the stack made.
    for mode, made_from in ((f"container:{sonarr.id}", (sonarr.urn,)), (f"container:{engine_id}", ())):
        said = analyze_stack(pack, clients_with(mode, made_from))["vpn-no-bypass"]
        found = sorted(m.split("\n", 1)[-1] for m in said)
        assert found == [
            f"{client}: has a network path that bypasses the VPN (network_mode {mode}, networks none); "
            "share the VPN container's namespace only"
            for client in sorted(clients)
        ], found


@pytest.mark.parametrize("stack", sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")))
def test_repository_stacks_pass_every_mandatory_policy(stack: str) -> None:
    report = run_pack(ROOT / "policies", plan(stack).resources)
    assert report.mandatory == [], report.mandatory
    assert all(d.level == "advisory" for d in report.diagnostics)


@pytest.mark.parametrize(
    ("stack", "change"),
    [
        ("prod", lambda c: c.update(bundles=[b for b in BUNDLES if b != "companions"])),
        ("prod", lambda c: c.update(services={**c.get("services", {}), "homepage": {"enabled": False}})),
        ("cluster", lambda c: c.update(services={**c.get("services", {}), "homepage": {"enabled": False}})),
        # Each companion toggled off on its own.
        (
            "prod",
            lambda c: c.update(
                services={**c.get("services", {}), **{n: {"enabled": False} for n in ("seerr", "flaresolverr")}}
            ),
        ),
        ("cluster", lambda c: c.update(services={**c.get("services", {}), "unpackerr": {"enabled": False}})),
        # The companions alone beside the core: the start page lists the core's UI only.
        ("prod", lambda c: c.update(bundles=["companions"])),
        ("cluster", lambda c: c.update(bundles=["companions", "arr"])),
    ],
)
def test_the_companions_turned_off_or_alone_pass_every_mandatory_policy(pack: PolicyPack, stack: str, change) -> None:
    cfg = raw_config(stack)
    change(cfg)
    result = plan_config(cfg, stack=f"companions-{stack}")
    names = {r.inputs.get("name") for r in result.resources if r.type in (CONTAINER, SERVICE)}
    assert ("homepage" in names) == (
        "companions" in cfg.get("bundles", BUNDLES) and "homepage" not in cfg.get("services", {})
    ), names
    custom = [r for r in result.resources if r.custom]
    found = [
        f"{d.policyName}: {d.message}"
        for response in (*(pack.analyze(r) for r in custom), pack.analyze_stack(custom))
        for d in response.diagnostics
        if d.enforcementLevel == LEVELS["mandatory"]
    ]
    assert found == [], found


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests", "bench", "docs", "*.egg-info", "venv"),
    )
    return project


def test_a_privileged_unbounded_container_fails_the_plan(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    main = project / "__main__.py"
    main.write_text(
        main.read_text()
        + """
import pulumi_docker as docker

docker.Container("rogue", image="alpine:latest", privileged=True, network_mode="host",
                 mounts=[docker.ContainerMountArgs(type="bind", source="/var/run/docker.sock",
                                                   target="/var/run/docker.sock")])
"""
    )
    out = tmp_path / "plan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mediastack_cli", "plan", "--stack", "dev", "-q", "--json", str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    policy = json.loads(out.read_text())["policy"]
    named = {d["policy"] for d in policy["diagnostics"] if d["resource"] == "rogue" and d["level"] == "mandatory"}
    assert {
        "no-privileged",
        "resource-limits",
        "memory-reservation",
        "health-check",
        "image-pinned",
        "no-host-namespaces",
        "docker-socket-via-proxy",
        "no-new-privileges",
        "restart-policy",
        "log-rotation",
    } <= named
    for name in ("no-privileged", "resource-limits", "image-pinned"):
        assert name in proc.stdout


def test_policy_config_file_changes_levels(tmp_path: Path) -> None:
    config = tmp_path / "policy.json"

    def plan_with(settings: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        config.write_text(json.dumps(settings))
        command = [
            sys.executable,
            "-m",
            "mediastack_cli",
            "plan",
            "--stack",
            "dev",
            "-q",
            "--policy-config",
            str(config),
        ]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)

    proc = plan_with({"every-service-monitored": "mandatory"})
    assert proc.returncode == 1 and "every-service-monitored" in proc.stdout
    proc = plan_with({"every-service-monitored": {"nonsense": 1}})
    assert proc.returncode == 2 and "not a setting of this policy" in proc.stderr


# -- plain helpers ----------------------------------------------------------------------------------


def test_durations() -> None:
    assert seconds("30s") == 30 and seconds("1m30s") == 90 and seconds("500ms") == 0.5
    assert seconds(30_000_000_000) == 30 and seconds(None) is None and seconds("soon") is None


def test_image_refs() -> None:
    assert image_problem("lscr.io/linuxserver/sonarr:4.0.15") is None
    assert image_problem("registry:5000/img:1.0") is None
    assert image_problem("ghcr.io/x/y@sha256:" + "a" * 64) is None
    assert "no tag" in (image_problem("registry:5000/img") or "")
    assert "`latest`" in (image_problem("img:latest") or "")
    assert "digest" in (image_problem("img:1.0", require_digest=True) or "")


def test_both_shapes_read_the_same() -> None:
    c, s = from_container("sonarr", base_container()), from_service("sonarr", base_service())
    assert (c.memory, c.memory_reservation, c.cpus) == (s.memory, s.memory_reservation, s.cpus)
    assert c.health == s.health and c.service == s.service == "sonarr"
    assert {m.target for m in c.mounts} == {m.target for m in s.mounts}


def test_unknown_values_at_preview_do_not_hide_other_checks(pack: PolicyPack) -> None:
    """At preview the image digest and network names are unknown; the rest is still checked."""
    from pulumi.runtime import rpc

    props = with_(base_container(), image=rpc.UNKNOWN, privileged=True)
    props["networksAdvanced"] = [{"name": rpc.UNKNOWN, "aliases": ["sonarr"]}]
    named = analyze(pack, CONTAINER, props)
    assert "no-privileged" in named
    assert "image-pinned" not in named  # the tag pin is read from the mediastack.image label


def test_checks_that_do_not_apply_to_services_say_so(pack: PolicyPack) -> None:
    response = pack.analyze(reg(SERVICE, labelled(base_service(), **{"mediastack.tier": "critical"})))
    assert not response.diagnostics
    skipped = {n.policy_name for n in response.not_applicable}
    assert {"no-new-privileges", "critical-no-swap", "no-privileged"} <= skipped


def test_every_policy_is_documented() -> None:
    from mediastack_policies import POLICIES

    doc = (ROOT / "docs/policies.md").read_text()
    for policy in POLICIES:
        assert f"| `{policy.name}` |" in doc, policy.name


def test_a_secret_value_in_a_container_env_is_refused(pack: PolicyPack) -> None:
    """On one host a Pulumi secret in a container's environment is readable by anyone who can inspect it."""
    line = "SONARR__AUTH__APIKEY=0123456789abcdef0123456789abcdef"
    one = pack.analyze(reg(CONTAINER, with_(base_container(), envs=["PUID=1000", real_secret(line)])))
    (message,) = [d.message for d in one.diagnostics if d.policyName == "secret-not-in-container-env"]
    assert "sonarr: environment variable SONARR__AUTH__APIKEY carries a secret value; Docker shows" in message
    whole = pack.analyze(reg(CONTAINER, with_(base_container(), envs=real_secret(["PUID=1000", line]))))
    (message,) = [d.message for d in whole.diagnostics if d.policyName == "secret-not-in-container-env"]
    assert "sonarr: its environment is a Pulumi secret, so it carries a secret value;" in message
    # The file form passes: the variable names a path, the value is in the file.
    named = with_(base_container(), envs=["PUID=1000", "FILE__SONARR__AUTH__APIKEY=/run/secrets/sonarr-api-key"])
    assert "secret-not-in-container-env" not in analyze(pack, CONTAINER, named)
    # A Swarm service's secrets are Swarm secrets; its environment is not this policy's.
    service = task(base_service(), "taskSpec.containerSpec.env", {"PUID": "1000", "APIKEY": real_secret("x1")})
    assert "secret-not-in-container-env" not in analyze(pack, SERVICE, service)
