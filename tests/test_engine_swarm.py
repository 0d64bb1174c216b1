"""The cluster stack on a real one-node Docker Swarm: networks, configs, secrets and services created as
pulumi-docker creates them (tests/engine_apply.py `apply_swarm`), with stand-in images.

The node stands for one of the cluster's hosts (its labels are that host's, from the facts its sysctl step
carries for the cluster policies): what is placed on that host runs there, global services run there, and
what is pinned to another host stays pending because no node satisfies its constraints."""

from __future__ import annotations

import base64
import json
import time

import docker.errors
import pytest
import standins
from engine_apply import SECRET, SERVICE, SERVICE_CONFIG, Target, apply_swarm, dependency_order, unsealed_plan

import dockerd
from conftest import ROOT, raw_config
from mediastack_cli.offline import read_stack

pytestmark = pytest.mark.engine

SETTLE_S = 240  # tasks scheduled, images resolved without a registry, health checks passed, on 2 busy cores


@pytest.fixture(scope="module")
def swarm(docker_engine, tmp_path_factory):
    engine = dockerd.start(worker=docker_engine.worker + 8)
    try:
        address = dockerd.BRIDGE_IP.split("/")[0]
        engine.cli("swarm", "init", "--advertise-addr", address, "--listen-addr", f"{address}:2377")
        plan = unsealed_plan(read_stack(ROOT, "cluster"))
        first = raw_config("cluster")["hosts"][0]["name"]
        facts = next(r.inputs["environment"] for r in plan.resources if r.name.endswith(f"-{first}-tuning-sysctl"))
        host = {
            "name": facts["MEDIASTACK_HOST"],
            "cpus": float(facts["MEDIASTACK_HOST_CPUS"]),
            "memory": int(facts["MEDIASTACK_HOST_MEMORY"]),
            "labels": json.loads(facts["MEDIASTACK_SWARM_NODE_LABELS"]),
        }
        node = engine.client.nodes.list()[0]
        spec = node.attrs["Spec"]
        spec["Labels"] = dict(host["labels"])
        node.update(spec)
        standins.build_all(engine, plan)
        # This machine is smaller than the host the node stands for: reservations shrink in proportion, so
        # the scheduler still has to fit them (and the placement under test stays the program's).
        resources = engine.client.api.info()
        scale = min(1.0, resources["NCPU"] / host["cpus"], resources["MemTotal"] / host["memory"])
        target = Target(
            engine.client,
            tmp_path_factory.mktemp("swarmhost"),
            engine.socket,
            run_commands=(f"{host['name']}-storage-dirs",),
            reservation_scale=scale,
        )
        applied = apply_swarm(plan, target)
        yield engine, plan, applied, host
    finally:
        dockerd.stop(engine)


def _satisfied(constraints: list[str], labels: dict[str, str]) -> bool:
    for constraint in constraints:
        operator = "==" if "==" in constraint else "!="
        key, value = (part.strip() for part in constraint.split(operator, 1))
        if key.startswith("node.labels."):
            actual = labels.get(key[len("node.labels.") :])
        elif key == "node.role":
            actual = "manager"
        else:
            return False
        if (actual == value) != (operator == "=="):
            return False
    return True


def _tasks(engine, name: str) -> list[dict]:
    try:
        return engine.client.api.tasks(filters={"service": name})
    except docker.errors.NotFound:  # the service was refused (the acceptance test says why)
        return []


def _settled(engine, plan, host) -> dict[str, str]:
    """Service name -> the state of its newest task once every expected one runs (or the time is up)."""
    expected = {
        r.inputs["name"]: _satisfied(r.inputs["taskSpec"].get("placement", {}).get("constraints", []), host["labels"])
        for r in plan.resources
        if r.type == SERVICE
    }
    deadline = time.monotonic() + SETTLE_S
    states: dict[str, str] = {}
    while True:
        states = {}
        for name in expected:
            tasks = sorted(_tasks(engine, name), key=lambda t: t["CreatedAt"])
            states[name] = tasks[-1]["Status"]["State"] if tasks else "none"
        runs = all((states[n] == "running") == want for n, want in expected.items())
        if runs or time.monotonic() > deadline:
            return states
        time.sleep(3)


def test_every_network_config_secret_and_service_is_accepted(swarm):
    _, _, applied, _ = swarm
    assert applied.errors == {}


def test_configs_and_secrets_are_created_before_the_services_that_mount_them(swarm):
    _, plan, applied, _ = swarm
    position = {name: n for n, (_, name, _) in enumerate(applied.calls)}
    by_urn = {r.urn: r for r in plan.resources}
    checked = 0
    for resource in dependency_order(plan):
        if resource.type != SERVICE or resource.name not in position:
            continue
        for dependency in resource.dependencies:
            needed = by_urn.get(dependency)
            if needed and needed.type in (SERVICE_CONFIG, SECRET):
                assert position[needed.name] < position[resource.name]
                checked += 1
    assert checked > 0


_states: dict[str, str] = {}


def _settled_once(engine, plan, host) -> dict[str, str]:
    if not _states:
        _states.update(_settled(engine, plan, host))
    return _states


def test_placement_holds_and_global_services_run_on_the_node(swarm):
    engine, plan, _, host = swarm
    states = _settled_once(engine, plan, host)
    placed, pinned_elsewhere, global_ = [], [], []
    for r in plan.resources:
        if r.type != SERVICE:
            continue
        name = r.inputs["name"]
        constraints = r.inputs["taskSpec"].get("placement", {}).get("constraints", [])
        if (r.inputs.get("mode") or {}).get("global"):
            global_.append(name)
        (placed if _satisfied(constraints, host["labels"]) else pinned_elsewhere).append(name)
    assert placed and pinned_elsewhere and global_
    assert {n: states[n] for n in placed if states[n] != "running"} == {}
    assert {n: states[n] for n in pinned_elsewhere if states[n] == "running"} == {}
    for name in pinned_elsewhere:
        task = _tasks(engine, name)[0]
        assert "no suitable node" in task["Status"].get("Err", "") + task["Status"].get("Message", ""), name
    for name in global_:
        assert len([t for t in _tasks(engine, name) if t["Status"]["State"] == "running"]) == 1, name


def test_configs_and_secrets_are_mounted_where_the_images_read_them(swarm):
    engine, plan, _, host = swarm
    _settled_once(engine, plan, host)
    by_mock = {}
    for r in plan.resources:
        if r.type in (SERVICE_CONFIG, SECRET):
            data = r.inputs["data"]
            by_mock[r.inputs["name"]] = base64.b64decode(data) if r.type == SERVICE_CONFIG else data.encode()
    checked = 0
    for r in plan.resources:
        if r.type != SERVICE:
            continue
        running = engine.client.containers.list(filters={"label": f"com.docker.swarm.service.name={r.inputs['name']}"})
        if not running:
            continue
        spec = r.inputs["taskSpec"]["containerSpec"]
        for ref in [*spec.get("configs", []), *spec.get("secrets", [])]:
            name = ref.get("configName") or ref.get("secretName")
            path = ref["fileName"] if ref["fileName"].startswith("/") else f"/run/secrets/{ref['fileName']}"
            # Read as the user the file is for (a 0400 secret of a process that dropped to it; the container's root
            # has no DAC_OVERRIDE), else as the container's own user.
            owner = f"{ref['fileUid']}:{ref.get('fileGid') or ref['fileUid']}" if ref.get("fileUid") else ""
            shown = running[0].exec_run(["cat", path], user=owner)
            assert (shown.exit_code, shown.output) == (0, by_mock[name]), (r.inputs["name"], path)
            checked += 1
    assert checked > 0
