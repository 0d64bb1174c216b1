"""The cluster stack on a real three-node Docker Swarm: each of the cluster's hosts (Pulumi.cluster.yaml) is a
node container on the tests' engine running Debian's dockerd (tests/swarm_nodes.py), on a network of the tests'
range with the hosts' addresses replaced by the nodes'. The swarm is formed (init, two manager joins), each
node labelled with its host's labels from the plan, the stand-in images loaded into every node, each host's
storage steps run on its node, and the plan applied to the first manager as pulumi-docker applies it.

The shared filesystem is one directory mounted into every node (GlusterFS itself is not run); node-local paths
(config_root, cache_root) are each node's own directory.

Marked `multinode`: about 3-4 minutes on 2 cores (three inner engines, ~25 services); `pytest -m "engine and
not multinode"` leaves them out locally; `.ci/run` runs them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from datetime import datetime

import pytest
import standins
import swarm_nodes
from engine_apply import SECRET, SERVICE, SERVICE_CONFIG, Target, apply_swarm, cluster_node_facts, unsealed_plan

import dockerd
from conftest import ROOT
from mediastack_cli.offline import read_stack

pytestmark = [pytest.mark.engine, pytest.mark.multinode]

SETTLE_S = 300  # three inner engines, tasks scheduled and health checks passed, on 2 busy cores
HOST_STEPS = ("-storage-dirs", "-storage-seeds")
SWARM_POOL = "10.213.224.0/20"  # the overlay networks' subnets, in the tests' range


def cluster_plan(addresses: dict[str, str]):
    """The cluster stack with each host's address replaced by its node's."""
    files = read_stack(ROOT, "cluster")
    hosts = json.loads(files.config["mediastack:hosts"])
    for host in hosts:
        host["address"] = addresses[host["name"]]
    return unsealed_plan(dataclasses.replace(files, config={**files.config, "mediastack:hosts": json.dumps(hosts)}))


def _labels(resource) -> dict[str, str]:
    return {label["label"]: label["value"] for label in resource.inputs.get("labels", [])}


def _hosts(plan) -> list[dict]:
    return cluster_node_facts(plan)


@pytest.fixture(scope="module")
def cluster(docker_engine, tmp_path_factory):
    engine = docker_engine
    names = ["gpu1", "node2", "node3"]
    root = tmp_path_factory.mktemp("nodes")
    try:
        nodes = swarm_nodes.start_nodes(engine, names, root, shared_mount="/mnt/mediastack")
    except dockerd.EngineUnavailable as error:
        swarm_nodes.unavailable(str(error))
    try:
        by_name = {n.name: n for n in nodes.nodes}
        plan = cluster_plan({n.name: n.address for n in nodes.nodes})
        hosts = {h["name"]: h for h in _hosts(plan)}
        manager = nodes.nodes[0]
        manager.cli("swarm", "init", "--advertise-addr", manager.address, "--default-addr-pool", SWARM_POOL)
        token = manager.cli("swarm", "join-token", "-q", "manager").strip()
        for node in nodes.nodes[1:]:
            node.cli("swarm", "join", "--token", token, "--advertise-addr", node.address, f"{manager.address}:2377")
        for node in manager.client.nodes.list():
            spec = node.attrs["Spec"]
            spec["Labels"] = dict(hosts[node.attrs["Description"]["Hostname"]]["labels"])
            node.update(spec)
        images = sorted(standins.build_all(engine, plan))
        swarm_nodes.load_images(engine, images, nodes.nodes)
        # Each host's storage steps on its node (ROOT: the node's disk), in dependency order.
        for resource in plan.resources:
            if resource.type.startswith("command:") and resource.name.endswith(HOST_STEPS):
                host = resource.name.split("-")[1]
                engine.cli(
                    "exec",
                    "-i",
                    "-e",
                    f"ROOT={swarm_nodes.HOST_ROOT}",
                    by_name[host].container,
                    "sh",
                    "-c",
                    resource.inputs["create"],
                    input=(resource.inputs.get("stdin") or "").encode(),
                )
        # Every node is smaller than its host: reservations shrink by the smallest node/host ratio.
        info = manager.client.api.info()
        scale = min(min(1.0, info["NCPU"] / h["cpus"], info["MemTotal"] / h["memory"]) for h in hosts.values())
        target = Target(
            manager.client,
            root / "unused",
            manager.socket,
            reservation_scale=scale,
            bind_source=swarm_nodes.node_bind_source,
        )
        started = time.monotonic()
        applied = apply_swarm(plan, target)
        yield nodes, plan, applied, hosts, started
    finally:
        nodes.stop()


def _constraints(resource) -> list[str]:
    return resource.inputs["taskSpec"].get("placement", {}).get("constraints", [])


def _satisfied(constraints: list[str], labels: dict[str, str]) -> bool:
    for constraint in constraints:
        operator = "==" if "==" in constraint else "!="
        key, value = (part.strip() for part in constraint.split(operator, 1))
        if key.startswith("node.labels."):
            actual = labels.get(key[len("node.labels.") :])
        elif key == "node.role":
            actual = "manager"  # every host of the cluster is a manager
        else:
            raise AssertionError(f"constraint the test cannot read: {constraint}")
        if (actual == value) != (operator == "=="):
            return False
    return True


def _expected(plan, hosts) -> dict[str, set[str]]:
    """Service name -> the nodes its tasks must run on (global: every node that satisfies; replicated: one of)."""
    return {
        r.inputs["name"]: {n for n, h in hosts.items() if _satisfied(_constraints(r), h["labels"])}
        for r in plan.resources
        if r.type == SERVICE
    }


def _running(nodes, service: str) -> list[dict]:
    tasks = nodes.nodes[0].client.api.tasks(filters={"service": service, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


_settled: dict[str, list[str]] = {}


def settled(nodes, plan, hosts) -> dict[str, list[str]]:
    """Service -> hostnames of its running tasks, once each service runs as many tasks as it should."""
    if _settled:
        return _settled
    expected = _expected(plan, hosts)
    ids = {n.attrs["ID"]: n.attrs["Description"]["Hostname"] for n in nodes.nodes[0].client.nodes.list()}
    modes = {
        r.inputs["name"]: bool((r.inputs.get("mode") or {}).get("global")) for r in plan.resources if r.type == SERVICE
    }
    deadline = time.monotonic() + SETTLE_S
    while True:
        where = {name: sorted(ids.get(t["NodeID"], "?") for t in _running(nodes, name)) for name in expected}
        done = all(len(where[n]) == (len(expected[n]) if modes[n] else 1) for n in expected)
        if done or time.monotonic() > deadline:
            _settled.update(where)
            return _settled
        time.sleep(3)


def test_the_swarm_has_three_managers_labelled_as_the_cluster_hosts(cluster):
    nodes, _, applied, hosts, _ = cluster
    listed = nodes.nodes[0].client.nodes.list()
    assert sorted(n.attrs["Description"]["Hostname"] for n in listed) == sorted(hosts)
    for node in listed:
        assert node.attrs["Spec"]["Role"] == "manager"
        assert node.attrs["Status"]["State"] == "ready"
        assert node.attrs["Spec"]["Labels"] == hosts[node.attrs["Description"]["Hostname"]]["labels"]
    assert applied.errors == {}


def test_every_service_runs_where_its_placement_allows_and_globals_on_every_eligible_node(cluster):
    nodes, plan, _, hosts, started = cluster
    where = settled(nodes, plan, hosts)
    print(f"cluster stack: every service running {time.monotonic() - started:.0f} s after the apply began")
    expected = _expected(plan, hosts)
    pinned = [r.inputs["name"] for r in plan.resources if r.type == SERVICE and len(expected[r.inputs["name"]]) == 1]
    globals_ = [
        r.inputs["name"] for r in plan.resources if r.type == SERVICE and (r.inputs.get("mode") or {}).get("global")
    ]
    assert pinned and globals_
    not_running = {n: w for n, w in where.items() if not w}
    assert not_running == {}
    misplaced = {n: w for n, w in where.items() if not set(w) <= expected[n]}
    assert misplaced == {}
    for name in globals_:
        assert where[name] == sorted(expected[name]), name
    # The constraints are not vacuous: some global runs on fewer nodes than the swarm has, something is pinned.
    assert any(len(expected[n]) < len(hosts) for n in globals_)
    assert {n: where[n] for n in pinned} == {n: sorted(expected[n]) for n in pinned}


def test_node_local_state_stays_on_its_node_and_shared_data_is_seen_by_all(cluster):
    nodes, plan, _, hosts, _ = cluster
    where = settled(nodes, plan, hosts)
    disks = {n.name: n.disk for n in nodes.nodes}
    checked = 0
    for r in plan.resources:
        if r.type != SERVICE or r.inputs["name"] not in where or len(where[r.inputs["name"]]) != 1:
            continue
        (host,) = where[r.inputs["name"]]
        for mount in r.inputs["taskSpec"]["containerSpec"].get("mounts", []):
            source = mount.get("source", "")
            if mount["type"] != "bind" or mount.get("readOnly") or not source.startswith("/srv/"):
                continue
            # The stand-in writes a file into each writable bind mount before serving.
            holders = sorted(n for n, disk in disks.items() if (disk / source.lstrip("/") / ".standin-write").exists())
            assert holders == [host], (r.inputs["name"], source)
            checked += 1
    assert checked >= 5
    shared = [p for p in (nodes.root / "shared").rglob(".standin-write")]
    assert shared, "no service wrote into the shared data root"


def test_configs_and_secrets_are_mounted_where_the_images_read_them_on_every_node(cluster):
    nodes, plan, _, hosts, _ = cluster
    settled(nodes, plan, hosts)
    data = {}
    for r in plan.resources:
        if r.type in (SERVICE_CONFIG, SECRET):
            value = r.inputs["data"]
            data[r.inputs["name"]] = base64.b64decode(value) if r.type == SERVICE_CONFIG else value.encode()
    checked: set[str] = set()
    for r in plan.resources:
        if r.type != SERVICE:
            continue
        spec = r.inputs["taskSpec"]["containerSpec"]
        refs = [*spec.get("configs", []), *spec.get("secrets", [])]
        for node in nodes.nodes:
            running = node.client.containers.list(
                filters={"label": f"com.docker.swarm.service.name={r.inputs['name']}"}
            )
            for container in running:
                for ref in refs:
                    name = ref.get("configName") or ref.get("secretName")
                    path = ref["fileName"] if ref["fileName"].startswith("/") else f"/run/secrets/{ref['fileName']}"
                    # As the user the file is for (a 0400 secret; the container's root has no DAC_OVERRIDE).
                    owner = f"{ref['fileUid']}:{ref.get('fileGid') or ref['fileUid']}" if ref.get("fileUid") else ""
                    shown = container.exec_run(["cat", path], user=owner)
                    assert (shown.exit_code, shown.output) == (0, data[name]), (r.inputs["name"], node.name, path)
                    checked.add(node.name)
    assert len(checked) >= 2, checked


def _timestamp(text: str) -> float:
    # Docker's RFC 3339 with nanoseconds: cut to microseconds for datetime.
    head, _, rest = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00").timestamp()


def _started(nodes, task: dict) -> float:
    """When the task's container started, from the engine of the node it ran on."""
    hostname = {n.attrs["ID"]: n.attrs["Description"]["Hostname"] for n in nodes.nodes[0].client.nodes.list()}
    node = next(n for n in nodes.nodes if n.name == hostname[task["NodeID"]])
    container = node.client.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    return _timestamp(container["State"]["StartedAt"])


def _update_and_watch(nodes, service: str) -> tuple[float, float]:
    """Forces a rolling update of a one-replica service; once it is done, returns when the old task stopped
    and when the new task's container started."""
    manager = nodes.nodes[0]
    (old,) = _running(nodes, service)
    manager.cli("service", "update", "--force", "--detach", service)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        tasks = {t["ID"]: t for t in manager.client.api.tasks(filters={"service": service})}
        new = [t for t in tasks.values() if t["ID"] != old["ID"] and t["Status"]["State"] == "running"]
        if new and tasks[old["ID"]]["Status"]["State"] in ("shutdown", "complete"):
            return _timestamp(tasks[old["ID"]]["Status"]["Timestamp"]), _started(nodes, new[0])
        time.sleep(1)
    raise AssertionError(f"{service}: the update did not finish in 180 s")


def test_updates_follow_each_services_update_order(cluster):
    nodes, plan, _, hosts, _ = cluster
    where = settled(nodes, plan, hosts)
    orders = {
        r.inputs["name"]: r.inputs["updateConfig"]["order"]
        for r in plan.resources
        if r.type == SERVICE and not (r.inputs.get("mode") or {}).get("global") and len(where[r.inputs["name"]]) == 1
    }
    start_first = next(n for n, o in sorted(orders.items()) if o == "start-first")
    stop_first = next(n for n, o in sorted(orders.items()) if o == "stop-first")
    # start-first: the new task's container started before the old task had stopped.
    old_stopped, new_started = _update_and_watch(nodes, start_first)
    assert new_started < old_stopped, start_first
    # stop-first: the new task's container started only once the old task had stopped (Swarm creates the new
    # task beforehand, in state "ready": its creation time says nothing).
    old_stopped, new_started = _update_and_watch(nodes, stop_first)
    assert old_stopped <= new_started, stop_first
