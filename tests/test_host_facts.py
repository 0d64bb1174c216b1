"""A host's capacities travel once, on its sysctl step, not on every container: resizing a host replaces nothing."""

from __future__ import annotations

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
    # (Swarm services still carry the node list as mediastack.cluster-nodes for the cluster policies; a label change
    # there updates a service in place, it replaces nothing.)
    facts = host_facts(plan("cluster"))
    assert set(facts) == {"gpu1", "node2", "node3"}
    assert facts["node2"]["MEDIASTACK_HOST_CPUS"] == "4" and facts["gpu1"]["MEDIASTACK_HOST_CPUS"] == "8"


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
    assert any("host nas: CPU reservations total 5.00, above 1.80 (2 CPUs less 10% headroom)" in m for m in messages)
    without = [r for r in resources if not (r.type.startswith("command:") and "sysctl" in r.name)]
    report = run_pack(ROOT / "policies", without)
    messages = [d.message for d in report.mandatory if d.policy == "host-capacity"]
    assert any("host nas: its capacities are unknown" in m for m in messages), messages
