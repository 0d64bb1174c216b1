"""A host's capacities travel once, on its sysctl step, not on every container: resizing a host replaces nothing."""

from __future__ import annotations

import json
from typing import Any

from conftest import CONTAINER, ROOT, plan, plan_config, raw_config
from mediastack_cli.analyzer import run_pack
from mediastack_cli.offline import PlanResult

SERVICE = "docker:index/service:Service"


def workloads(result: PlanResult) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in result.resources if r.type in (CONTAINER, SERVICE)}


def host_facts(result: PlanResult) -> dict[str, dict[str, str]]:
    return {
        r.inputs["environment"]["MEDIASTACK_HOST"]: r.inputs["environment"]
        for r in result.resources
        if r.type.startswith("command:") and "MEDIASTACK_HOST" in (r.inputs.get("environment") or {})
    }


def test_resizing_the_host_changes_no_container() -> None:
    before = plan("prod")
    bigger = raw_config("prod")
    bigger["hosts"][0]["memory"] = "64GiB"
    bigger["reserve_for_host"] = "2GiB"
    after = plan_config(bigger, "prod")
    assert workloads(after) == workloads(before)
    assert len(workloads(before)) >= 25
    # The facts did change, in one place: the host's sysctl step (updated in place, not replaced).
    assert host_facts(before)["nas"]["MEDIASTACK_HOST_MEMORY"] == str(32 * 2**30)
    assert host_facts(after)["nas"]["MEDIASTACK_HOST_MEMORY"] == str(64 * 2**30)
    assert host_facts(after)["nas"]["MEDIASTACK_HOST_RESERVE"] == str(2 * 2**30)


def test_every_cluster_node_carries_its_facts_once() -> None:
    facts = host_facts(plan("cluster"))
    assert set(facts) == {"gpu1", "node2", "node3"}
    assert facts["node2"]["MEDIASTACK_HOST_CPUS"] == "4" and facts["gpu1"]["MEDIASTACK_HOST_CPUS"] == "8"
    assert facts["gpu1"]["MEDIASTACK_SWARM_MANAGER"] == "true"
    assert json.loads(facts["gpu1"]["MEDIASTACK_SWARM_NODE_LABELS"])["mediastack.gpu"] == "nvidia"
    # No Swarm service carries node facts: none has a label naming another node's capacities.
    for name, inputs in workloads(plan("cluster")).items():
        assert not any("MEDIASTACK_HOST" in json.dumps(v) or '"cpus"' in json.dumps(v) for v in inputs.values()), name


def test_resizing_a_cluster_node_changes_no_swarm_service() -> None:
    before = plan("cluster")
    bigger = raw_config("cluster")
    bigger["hosts"][0]["memory"] = "64GiB"
    after = plan_config(bigger, "cluster")
    assert workloads(after) == workloads(before)
    assert len(workloads(before)) >= 25 and all(
        r.type == SERVICE for r in before.resources if r.name in workloads(before)
    )
    assert host_facts(before)["gpu1"]["MEDIASTACK_HOST_MEMORY"] == str(32 * 2**30)
    assert host_facts(after)["gpu1"]["MEDIASTACK_HOST_MEMORY"] == str(64 * 2**30)


def _with_node_facts(result: PlanResult, node: str, **changes: str) -> list[Any]:
    resources = []
    for r in result.resources:
        env = r.inputs.get("environment") if r.type.startswith("command:") else None
        if env and env.get("MEDIASTACK_HOST") == node:
            r = type(r)(**{**r.__dict__, "inputs": {**r.inputs, "environment": {**env, **changes}}})
        resources.append(r)
    return resources


def test_the_cluster_policies_read_the_nodes_from_their_sysctl_steps() -> None:
    """The program refuses a node too small for its services itself; the pack must still judge the carried facts."""
    report = run_pack(ROOT / "policies", plan("cluster").resources)
    assert not [d for d in report.mandatory if d.policy in ("cluster-capacity", "placement-satisfiable")]
    small = _with_node_facts(plan("cluster"), "gpu1", MEDIASTACK_HOST_MEMORY=str(4 * 2**30))
    messages = [d.message for d in run_pack(ROOT / "policies", small).mandatory if d.policy == "cluster-capacity"]
    assert (
        "node gpu1: memory reservations of the services placed there total 7.3 GiB, above the 3.0 GiB it has after "
        "its reserve" in [m.splitlines()[-1] for m in messages]
    ), messages
    labels = json.loads(host_facts(plan("cluster"))["gpu1"]["MEDIASTACK_SWARM_NODE_LABELS"])
    no_gpu = _with_node_facts(
        plan("cluster"), "gpu1", MEDIASTACK_SWARM_NODE_LABELS=json.dumps({**labels, "mediastack.gpu": "none"})
    )
    messages = [d.message for d in run_pack(ROOT / "policies", no_gpu).mandatory if d.policy == "placement-satisfiable"]
    assert [m.splitlines()[-1] for m in messages] == [
        "tdarr-node: placement constraint 'node.labels.mediastack.gpu != none' matches no node of the cluster",
        "tdarr-node: no node satisfies all of its constraints (node.labels.mediastack.gpu != none)",
    ], messages


def test_the_pack_checks_capacity_against_the_carried_facts() -> None:
    """The program refuses a too-small host itself; the pack must still see the facts when they disagree."""
    resources = []
    for r in plan("prod").resources:
        env = r.inputs.get("environment") if r.type.startswith("command:") else None
        if env and "MEDIASTACK_HOST" in env:
            r = type(r)(**{**r.__dict__, "inputs": {**r.inputs, "environment": {**env, "MEDIASTACK_HOST_CPUS": "2"}}})
        resources.append(r)
    report = run_pack(ROOT / "policies", resources)
    messages = [d.message for d in report.mandatory if d.policy == "host-capacity"]
    assert any("host nas: CPU reservations total 5.25, above 1.80 (2 CPUs less 10% headroom)" in m for m in messages)
    without = [r for r in resources if not (r.type.startswith("command:") and "sysctl" in r.name)]
    report = run_pack(ROOT / "policies", without)
    messages = [d.message for d in report.mandatory if d.policy == "host-capacity"]
    assert any("host nas: its capacities are unknown" in m for m in messages), messages
