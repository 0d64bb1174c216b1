"""The cluster stack under Pulumi's mocks: every catalog service as a Swarm service, shaped like its
single-host container, placed by its state, on overlay networks, with configs, secrets, shared storage
and a bootstrap in the right order."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import pytest
import yaml

from conftest import container_labels, containers, plan, plan_config, raw_config, require_tool, traefik_dynamic
from mediastack.catalog.services import CATALOG, INTERNAL_NETWORKS, MountKind
from mediastack.generate.files import CONTAINER_PATHS, generate_files
from mediastack.model.config import default_tiers
from mediastack.model.units import parse_size
from mediastack.plan.loading import ConfigError, parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack.swarm.stack import encrypted_networks
from mediastack_cli.offline import PlanResult, Registration
from mediastack_cli.synthetic import synthetic_cluster

SERVICE = "docker:index/service:Service"


def services(result: PlanResult) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in result.resources if r.type == SERVICE}


def by_name(result: PlanResult) -> dict[str, Registration]:
    return {r.name: r for r in result.resources}


def labels(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {i["label"]: i["value"] for i in items or []}


def single_host_twin() -> PlanResult:
    """The cluster config on its first host alone: what each Swarm service must look like as a container."""
    cfg = raw_config("cluster")
    # The tiers the cluster's smallest host chose (the single host would choose by its own size).
    smallest = min(cfg["hosts"], key=lambda h: h["cpus"])
    cfg["tiers"] = default_tiers(smallest["cpus"], parse_size(smallest["memory"]))
    cfg["hosts"] = [cfg["hosts"][0]]
    del cfg["storage"]
    cfg["services"] = {k: {kk: vv for kk, vv in v.items() if kk != "host"} for k, v in cfg["services"].items()}
    return plan_config(cfg, stack="cluster-single")


def test_a_cluster_renders_services_only() -> None:
    result = plan("cluster")
    assert containers(result) == {}
    assert set(services(result)) == set(CATALOG) - {"gluetun"}


def test_same_image_limits_health_mounts_and_env_as_the_single_host_container() -> None:
    swarm, single = services(plan("cluster")), containers(single_host_twin())
    assert set(swarm) == set(single) | {n for n, s in CATALOG.items() if s.cluster_only}
    for name, c in single.items():
        s = swarm[name]
        spec, res = s["taskSpec"]["containerSpec"], s["taskSpec"]["resources"]
        assert spec["image"] == c["image"], name
        assert res["limits"]["nanoCpus"] == round(float(c["cpus"]) * 1e9), name
        assert res["limits"]["memoryBytes"] == c["memory"] * 2**20, name
        assert res["reservation"]["memoryBytes"] == c["memoryReservation"] * 2**20, name
        assert res["reservation"]["nanoCpus"] / 1e9 == pytest.approx(c["cpuShares"] / 1024, abs=0.01), name
        assert spec.get("healthcheck") == c.get("healthcheck"), name
        # On one host a read-only rootfs binds its generated files; on a Swarm they are Swarm configs, except
        # Traefik's routes, which it binds from its host there too (the public routes are added once the logins exist).
        bound = [m for m in c["mounts"] if "/generated/" in m.get("source", "") and name != "traefik"]
        # Secret files: a bind of the host step's directory on one host, Swarm secrets at the same paths on a Swarm.
        bound += [m for m in c["mounts"] if m["target"] == "/run/secrets"]
        assert [m for m in spec["mounts"] if m["target"] != "/dev/dri"] == [m for m in c["mounts"] if m not in bound]
        assert spec["capDrops"] == ["ALL"] and spec.get("capAdds") == c["capabilities"].get("adds"), name
        assert spec.get("user") == c.get("user") and spec["readOnly"] == c["readOnly"], name
        # The socket proxy: on a cluster no reader is left (cAdvisor reads cgroups), so its sections are closed.
        if isinstance(c["envs"], list) and isinstance(spec["env"], dict) and name != "socket-proxy":
            # The same variables on both, those naming secret files included (the same paths).
            assert sorted(f"{k}={v}" for k, v in spec["env"].items()) == sorted(c["envs"]), name
        # The container's CMD is the service's args (commands would replace the entrypoint).
        if name not in ("cadvisor", "immich-postgres", "node-exporter"):
            assert spec.get("args") == c.get("command"), name
        if name == "node-exporter":  # one host: host network, so it listens on loopback and the monitoring bridge
            assert spec["args"] == [a for a in c["command"] if not a.startswith("--web.listen-address")]
        if name == "immich-postgres":  # the same tuning, plus what feeding the standby needs
            assert set(c["command"]) < set(spec["args"]) and "wal_level=replica" in spec["args"]
        assert s["taskSpec"]["logDriver"] == {"name": c["logDriver"], "options": c["logOpts"]}, name


def test_modes_and_placement_follow_the_state() -> None:
    swarm = services(plan("cluster"))
    hosts = {h["name"] for h in raw_config("cluster")["hosts"]}
    for name in ("node-exporter", "cadvisor"):
        assert swarm[name]["mode"] == {"global": True}, name
        assert "constraints" not in swarm[name]["taskSpec"]["placement"], name
    assert swarm["tdarr-node"]["mode"] == {"global": True}
    assert swarm["tdarr-node"]["taskSpec"]["placement"]["constraints"] == ["node.labels.mediastack.gpu != none"]
    assert swarm["jellyfin"]["mode"] == {"replicated": {"replicas": 1}}
    assert swarm["jellyfin"]["taskSpec"]["placement"]["constraints"] == ["node.labels.mediastack.host == gpu1"]
    assert swarm["socket-proxy"]["taskSpec"]["placement"]["constraints"] == ["node.role == manager"]
    assert swarm["immich-postgres"]["taskSpec"]["placement"]["constraints"] == ["node.labels.mediastack.host == node2"]
    for name, s in swarm.items():
        spec = CATALOG[name]
        constraints = s["taskSpec"]["placement"].get("constraints", [])
        pinned = [c for c in constraints if c.startswith("node.labels.mediastack.host == ")]
        for c in pinned:
            assert c.rsplit(" ", 1)[1] in hosts, (name, c)
        local_state = any(m.kind is MountKind.state for m in spec.mounts)
        if local_state and s["mode"] != {"global": True}:
            # Node-local state: one replica, pinned, stopped before its successor starts.
            assert s["mode"] == {"replicated": {"replicas": 1}} and len(pinned) == 1, name
            assert s["updateConfig"]["order"] == "stop-first" == s["rollbackConfig"]["order"], name
        if not constraints and s["mode"] != {"global": True}:
            assert s["updateConfig"]["order"] == "start-first", name
        assert s["taskSpec"]["restartPolicy"]["condition"] == "any", name
        assert s["updateConfig"]["failureAction"] == "rollback" and s["rollbackConfig"]["parallelism"] == 1, name


def test_overlay_networks_internal_and_encrypted_where_they_cross_hosts() -> None:
    result = plan("cluster")
    nets = {r.inputs["name"]: r.inputs for r in result.resources if r.type == "docker:index/network:Network"}
    assert nets and all(n["driver"] == "overlay" and n["attachable"] is True for n in nets.values())
    for role in INTERNAL_NETWORKS:
        assert nets[f"mediastack-{role}"]["internal"] is True
    assert nets["mediastack-frontend"]["internal"] is False
    # Members on different hosts: encrypted; every member pinned to one host (the socket proxy floats among
    # managers, so even that one crosses): none stays unencrypted in this stack.
    stack = resolve(parse_stack_config(raw_config("cluster"), "cluster"), "cluster")
    from mediastack.plan.placement import placement

    crossing = encrypted_networks(stack, {s.name: placement(s.spec, stack.config) for s in stack.services})
    for name, n in nets.items():
        role = name.removeprefix("mediastack-")
        assert (n.get("options") == {"encrypted": "true"}) == (role in crossing), name
    cfg = raw_config("cluster")
    cfg["bundles"] = ["photos"]  # Immich: its database network is shared by a floating server
    cfg["services"]["immich-server"] = {"enabled": True}
    swarm = services(plan_config(cfg, stack="photos"))
    assert {n["id"] for n in swarm["immich-postgres"]["taskSpec"]["networksAdvanceds"]} == {"mediastack-database"}


def test_generated_files_are_swarm_configs_and_passwords_swarm_secrets() -> None:
    result = plan("cluster")
    swarm = services(result)
    configs = {
        labels(r.inputs["labels"])["mediastack.file"]: r
        for r in result.resources
        if r.type == "docker:index/serviceConfig:ServiceConfig"
    }
    # Traefik's routes are a file on its host (tests/test_public_gate.py), not a Swarm config.
    uploads = {path for name in swarm if name != "traefik" for path in CATALOG[name].uploads}
    assert set(configs) == uploads
    files = generate_files(resolve(parse_stack_config(raw_config("cluster"), "cluster"), "cluster"))
    by_target = {CONTAINER_PATHS[p]: content for p, content in files.items() if p in CONTAINER_PATHS}
    for name, s in swarm.items():
        refs = s["taskSpec"]["containerSpec"].get("configs") or []
        # With a standby, the primary also reads the replication pg_hba.
        extra = [CONTAINER_PATHS["immich-postgres/pg_hba.conf"]] if name == "immich-postgres" else []
        wanted = [*(CONTAINER_PATHS[p] for p in CATALOG[name].uploads if name != "traefik"), *extra]
        assert sorted(r["fileName"] for r in refs) == sorted(wanted), name
        for ref in refs:
            config = next(c for c in configs.values() if c.inputs["name"] == ref["configName"])
            assert base64.b64decode(config.inputs["data"]).decode() == by_target[ref["fileName"]], name
    prometheus = yaml.safe_load(files["prometheus/prometheus.yml"])
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    assert jobs["node-exporter"]["dns_sd_configs"][0]["names"] == ["tasks.node-exporter"]  # every node's task
    secrets = {r.inputs["name"]: r.inputs for r in result.resources if r.type == "docker:index/secret:Secret"}
    assert secrets and all(s["data"] == "[secret]" for s in secrets.values())
    sonarr = swarm["sonarr"]["taskSpec"]["containerSpec"]
    assert sonarr["env"]["FILE__SONARR__AUTH__APIKEY"] == "/run/secrets/sonarr-api-key"
    assert "SONARR__AUTH__APIKEY" not in sonarr["env"]
    assert [r["secretName"] for r in sonarr["secrets"]] == ["mediastack-sonarr-api-key"]
    postgres = swarm["immich-postgres"]["taskSpec"]["containerSpec"]["env"]
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/immich-db-password"
    assert swarm["grafana"]["taskSpec"]["containerSpec"]["env"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    text = str([r.inputs for r in result.resources])
    assert "sha256:" in text and "offline-plan-cannot-decrypt" not in text


def test_traefik_in_swarm_mode() -> None:
    traefik = services(plan("cluster"))["traefik"]
    spec = traefik["taskSpec"]["containerSpec"]
    args = spec["args"]
    # Routes from the program's files (the provider's directory, bound read-only from the host Traefik is pinned
    # to, where the host step writes them); Swarm's VIP behind each name.
    assert "--providers.file.directory=/etc/traefik/dynamic" in args and "--providers.file.watch=true" in args
    assert not any(a.startswith(("--providers.swarm", "--providers.docker")) for a in args)
    assert "configs" not in spec
    assert {
        "target": "/etc/traefik/dynamic",
        "type": "bind",
        "readOnly": True,
        "source": "/srv/media/config/generated/traefik",
    } in spec["mounts"]
    # Host mode keeps the client's address, which the LAN-only routers' allow-lists check.
    assert [(p["publishedPort"], p["publishMode"]) for p in traefik["endpointSpec"]["ports"]] == [
        (80, "host"),
        (443, "host"),
    ]
    sonarr = labels(services(plan("cluster"))["sonarr"]["labels"])
    assert not any(k.startswith("traefik.") for k in sonarr)
    http = traefik_dynamic(plan("cluster"))["http"]
    assert http["routers"]["sonarr"]["rule"] == "Host(`sonarr.media.example.org`)"
    assert http["services"]["sonarr"]["loadBalancer"]["servers"] == [{"url": "http://sonarr:8989"}]
    assert "10.0.0.0/8" not in http["middlewares"]["sonarr-lan"]["ipAllowList"]["sourceRange"]  # the overlays' pool
    # No reader is left for the socket proxy on a cluster: only the ping its health check uses.
    env = services(plan("cluster"))["socket-proxy"]["taskSpec"]["containerSpec"]["env"]
    assert sorted(k for k, v in env.items() if v == "1") == ["PING"]


def test_storage_and_bootstrap_are_ordered() -> None:
    result = plan("cluster")
    r = by_name(result)
    urn = {name: reg.urn for name, reg in r.items()}
    hosts = [h["name"] for h in raw_config("cluster")["hosts"]]

    def waits(name: str, *others: str) -> None:
        deps = set(r[name].dependencies)
        for other in others:
            assert urn[other] in deps, (name, other)

    for h in hosts:
        waits(f"media-shared-storage-{h}-mount", "media-shared-storage-volume")
        waits("media-shared-storage-volume", f"media-shared-storage-{h}-brick")
        waits(f"media-{h}-storage-dirs", f"media-shared-storage-{h}-mount")
        waits(f"media-swarm-{h}-labels", "media-swarm-init")
    waits("media-swarm-token-worker", "media-swarm-init")
    for h in hosts[1:]:
        waits(
            f"media-swarm-{h}-join", f"media-swarm-{h}-member", "media-swarm-token-manager", f"media-{h}-tuning-daemon"
        )
        waits(f"media-swarm-{h}-labels", f"media-swarm-{h}-join")  # reads the node id the join printed
        assert r[f"media-swarm-{h}-join"].inputs["stdin"] == "[secret]"  # the token, never in the script
    waits("media-swarm-init", f"media-{hosts[0]}-tuning-daemon")
    for name in services(result):
        waits(f"media-{name}-service", "media-swarm-init")
    for step in ("init", "token-worker"):
        assert r[f"media-swarm-{step}"].inputs["delete"]
    # The join tokens are secret outputs and never printed in `pulumi up`'s log (stderr only is logged).
    for role in ("worker", "manager"):
        assert r[f"media-swarm-token-{role}"].inputs["logging"] == "stderr"
    assert "logging" not in r["media-swarm-init"].inputs
    commands = [x for x in result.resources if x.type.startswith("command:")]
    assert all(c.inputs.get("delete") for c in commands)
    assert {c.name for c in commands if c.name.endswith("-tuning-sysctl")} == {
        f"media-{h}-tuning-sysctl" for h in hosts
    }


def test_single_host_stacks_are_untouched_by_cluster_keys() -> None:
    for stack in ("dev", "prod"):
        result = plan(stack)
        assert not services(result)
        assert all(container_labels(c).get("mediastack.host") for c in containers(result).values())


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda c: c.pop("storage"), "mediastack:storage", ["needs shared storage"]),
        (lambda c: c["paths"].update(config_root="/mnt/mediastack/config"), "mediastack:paths.config_root", ["SQLite"]),
        (
            lambda c: c["paths"].update(data_root="/srv/data"),
            "mediastack:paths.data_root",
            ["under storage.mount_point"],
        ),
        (
            lambda c: c["services"].update(jellyfin={"host": "nope"}),
            "mediastack:services.jellyfin.host",
            ["not a host"],
        ),
        (lambda c: c["services"].update(redis={"host": "node2"}), "mediastack:services.redis.host", ["no node-local"]),
        (
            lambda c: c["hosts"][0].update(roles=["worker", "storage"]),
            "mediastack:hosts[0].roles",
            ["must be a manager"],
        ),
        (lambda c: c["hosts"][2].update(roles=["worker", "storage"]), "mediastack:hosts", ["2 managers", "Raft"]),
        (
            lambda c: [h.update(roles=["manager", "worker"]) for h in c["hosts"][1:]],
            "mediastack:hosts",
            ["1 with role storage", "replica 3"],
        ),
        (
            lambda c: c["downloads"].update(vpn={"provider": "mullvad", "wireguard_private_key": "k"}),
            "mediastack:downloads.vpn",
            ["cannot share"],
        ),
        (lambda c: c["storage"].update(kind="nfs"), "mediastack:storage", ["needs an `nfs` section"]),
        (
            lambda c: c.setdefault("tiers", {}).update(
                standard={"cpus": 2, "memory": "4GiB", "cpu_reservation": 0.25, "memory_reservation": "4GiB"}
            ),
            "mediastack:hosts[0].memory",
            ["on gpu1 (pinned and global)", "services.<name>.host"],
        ),
    ],
)
def test_cluster_config_errors_name_the_fix(change, path: str, words: list[str]) -> None:
    cfg = copy.deepcopy(raw_config("cluster"))
    change(cfg)
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(cfg, "cluster")
    lines = [line for line in str(caught.value).splitlines() if line.startswith(f"  - {path} = ")]
    assert any(all(w in line for w in words) for line in lines), str(caught.value)


def test_storage_on_a_single_host_is_refused() -> None:
    cfg = raw_config("prod")
    cfg["storage"] = {"kind": "glusterfs"}
    with pytest.raises(ConfigError, match="only for a stack with more than one host"):
        parse_stack_config(cfg, "prod")


def test_fifty_hosts_plan_without_error() -> None:
    # How long it takes is measured by bench/cluster_bench.py, not held here.
    result = plan_config(synthetic_cluster(50), stack="fifty")
    swarm = services(result)
    assert set(swarm) == set(CATALOG) - {"gluetun"}
    r = by_name(result)
    assert sum(1 for name in r if name.endswith("-join")) == 49
    assert sum(1 for name in r if name.endswith("-mount")) == 50
    assert sum(1 for name in r if name.endswith("-brick")) == 3
    from conftest import ROOT
    from mediastack_cli.analyzer import run_pack

    report = run_pack(ROOT / "policies", result.resources)
    assert report.mandatory == [], report.mandatory  # placement, capacity, state, backups: all hold at 50 hosts


def test_each_node_backs_up_the_state_it_holds() -> None:
    result = plan("cluster")
    installs = {r.name: r for r in result.resources if r.name.endswith("-backups-install")}
    assert set(installs) == {"media-gpu1-backups-install", "media-node2-backups-install", "media-node3-backups-install"}
    covered: dict[str, set[str]] = {}
    for name, r in installs.items():
        marker = next(t for t in r.inputs["triggers"] if t.startswith("mediastack.backup.covers="))
        covered[name] = set(marker.removeprefix("mediastack.backup.covers=").split(";")[0].split(","))
        assert r.inputs["stdin"] == "[secret]"
        assert "sftp:restic@backup.home.arpa:/srv/restic/mediastack-cluster" in r.inputs["create"]  # one repository
        assert "task() {" in r.inputs["create"]  # a Swarm node finds a service's task container by its label
    assert {"immich-postgres", "immich-redis", "immich-postgres-replica"} <= covered["media-node2-backups-install"] | (
        covered["media-node3-backups-install"]
    )
    assert {"jellyfin", "sonarr", "traefik"} <= covered["media-gpu1-backups-install"]
    assert "prometheus" in covered["media-node3-backups-install"]
    stateful = {n for n, s in services(result).items() if CATALOG[n].state}
    assert stateful <= set().union(*covered.values()) | {"immich-server"}  # its photos: include_photos is off


def test_the_swarm_backup_tool_finds_the_task_container(tmp_path) -> None:
    import subprocess

    from mediastack.host.backup import backup_plan, backup_tool
    from mediastack.plan.placement import placement

    stack = resolve(parse_stack_config(raw_config("cluster"), "cluster"), "cluster")
    mine = tuple(s for s in stack.services if placement(s.spec, stack.config).host == "node2")
    view = copy.copy(stack)
    object.__setattr__(view, "services", mine)
    plan_ = backup_plan(view, swarm=True)
    assert plan_ is not None
    tool = backup_tool(plan_)
    assert '"$DOCKER" exec "$(task immich-postgres)" pg_dump' in tool
    single = backup_tool(backup_plan(view) or plan_)
    assert "task()" not in single and '"$DOCKER" exec immich-postgres pg_dump' in single
    function = tool[tool.index("task() {") : tool.index("}\n", tool.index("task() {")) + 2]
    fake = tmp_path / "docker"
    fake.write_text(
        '#!/bin/sh\n[ "$1 $2 $3 $4" = "ps -q --filter label=com.docker.swarm.service.name=immich-postgres" ]'
        " && echo 3f2a9c && exit 0\nexit 0\n"
    )
    fake.chmod(0o755)
    script = f'DOCKER={fake}\n{function}printf "%s|%s" "$(task immich-postgres)" "$(task absent)"'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.stdout == "3f2a9c|absent", done.stderr  # the local task, else the name as on one host
    assert "scale the service to 0 on a manager" in tool.split("restore() {", 1)[1].split("\n}", 1)[0]
    (tmp_path / "tool.sh").write_text(tool)
    checked = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", "--severity=style", str(tmp_path / "tool.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout


def test_each_host_gets_the_directories_and_first_start_files_of_what_runs_there() -> None:
    r = by_name(plan("cluster"))
    assert "media-gpu1-storage-seeds" in r  # the download clients are pinned to gpu1
    assert "media-node2-storage-seeds" not in r and "media-node3-storage-seeds" not in r
    node3 = r["media-node3-storage-dirs"].inputs["create"]
    assert "/srv/media/config/prometheus" in node3 and "/srv/media/config/sonarr" not in node3
    assert "/srv/media/cache/artwork-cache" in node3  # a floating service may land on any host
    assert "/mnt/mediastack/data/media/movies" in node3  # the shared data tree, created through any host


def test_an_nvidia_node_gets_its_runtime_and_jellyfin_its_gpu(tmp_path) -> None:
    import json
    import os
    import subprocess

    assert raw_config("cluster")["hosts"][0]["gpu"] == "nvidia"  # the example's GPU node
    result = plan("cluster")
    r = by_name(result)
    gpu_daemon = r["media-gpu1-tuning-daemon"].inputs["create"]
    assert '"default-runtime": "nvidia"' in gpu_daemon
    assert "default-runtime" not in r["media-node2-tuning-daemon"].inputs["create"]
    jellyfin = services(result)["jellyfin"]
    spec = jellyfin["taskSpec"]["containerSpec"]
    assert spec["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "genericResources" not in jellyfin["taskSpec"]["resources"]["reservation"]  # nothing a node must advertise
    assert jellyfin["taskSpec"]["placement"]["constraints"] == ["node.labels.mediastack.host == gpu1"]
    # The merge, for real, into a daemon.json the host already has: the runtime is added, the user's keys kept.
    require_tool("python3")
    root = tmp_path / "host"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_text('{"dns": ["192.0.2.53"]}')
    done = subprocess.run(
        ["sh", "-c", gpu_daemon], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((root / "etc/docker/daemon.json").read_text())
    assert merged["default-runtime"] == "nvidia" and merged["dns"] == ["192.0.2.53"]
    assert merged["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"


@pytest.mark.parametrize("stack", ["cluster", "cluster-nfs"])
def test_swarm_config_and_secret_names_are_ones_docker_accepts(stack: str) -> None:
    """moby's names for configs and secrets: at most 64 of [a-zA-Z0-9-_.], starting and ending alphanumeric."""
    kinds = ("docker:index/serviceConfig:ServiceConfig", "docker:index/secret:Secret")
    names = [r.inputs["name"] for r in plan(stack).resources if r.type in kinds]
    assert names
    for name in names:
        assert len(name) <= 64 and re.fullmatch(r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?", name), name
    assert len(set(names)) == len(names)
