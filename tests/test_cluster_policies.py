"""The cluster policies through the analyzer protocol, on the cluster stack's own plan, broken one way at a time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from conftest import ROOT, plan, plan_config, raw_config
from mediastack_cli.analyzer import PolicyPack, run_pack
from mediastack_cli.offline import Registration

SERVICE = "docker:index/service:Service"


def resources() -> list[Registration]:
    return [copy.deepcopy(r) for r in plan("cluster").resources if r.custom]


def messages(pack: PolicyPack, rs: list[Registration]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for d in pack.analyze_stack(rs).diagnostics:
        found.setdefault(d.policyName, []).append(d.message)
    return found


def change(service: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[list[Registration]], None]:
    def apply(rs: list[Registration]) -> None:
        target = next(r for r in rs if r.type == SERVICE and r.inputs["name"] == service)
        edit(target.inputs)

    return apply


def set_label(inputs: dict[str, Any], key: str, value: str) -> None:
    inputs["labels"] = [lb for lb in inputs["labels"] if lb["label"] != key] + [{"label": key, "value": value}]


def mount_source(inputs: dict[str, Any], target: str, source: str) -> None:
    for m in inputs["taskSpec"]["containerSpec"]["mounts"]:
        if m["target"] == target:
            m["source"] = source


CASES = [
    (
        "placement-satisfiable",
        change(
            "jellyfin",
            lambda p: p["taskSpec"]["placement"].update(constraints=["node.labels.mediastack.host == nowhere"]),
        ),
        "matches no node",
    ),
    (
        "placement-satisfiable",
        change(
            "tdarr-node",
            lambda p: p["taskSpec"]["placement"].update(
                constraints=["node.labels.mediastack.gpu != none", "node.labels.mediastack.disk == hdd"]
            ),
        ),
        "no node satisfies all",
    ),
    (
        "cluster-capacity",
        change("sonarr", lambda p: p["taskSpec"]["resources"]["reservation"].update(memoryBytes=30 * 2**30)),
        "node gpu1: memory reservations",
    ),
    (
        "cluster-capacity",
        change("immich-machine-learning", lambda p: p["taskSpec"]["resources"]["reservation"].update(nanoCpus=9e9)),
        "fits none of the nodes",
    ),
    (
        "no-sqlite-on-network-fs",
        change("sonarr", lambda p: mount_source(p, "/config", "/mnt/mediastack/config/sonarr")),
        "SQLite",
    ),
    (
        "local-state-pinned",
        change("radarr", lambda p: p["mode"]["replicated"].update(replicas=2)),
        "runs 2 replica(s)",
    ),
    ("local-state-pinned", change("grafana", lambda p: p["taskSpec"].pop("placement")), "on 3 possible node(s)"),
]


@pytest.mark.parametrize(("policy", "break_it", "words"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_cluster_violations(pack: PolicyPack, policy: str, break_it, words: str) -> None:
    before = messages(pack, resources()).get(policy, [])
    rs = resources()
    break_it(rs)
    after = messages(pack, rs).get(policy, [])
    new = [m for m in after if m not in before]
    assert new and any(words in m for m in new), after


def test_the_cluster_stack_passes_every_mandatory_policy() -> None:
    report = run_pack(ROOT / "policies", plan("cluster").resources)
    assert report.mandatory == [], report.mandatory


def test_state_survives_with_backups_or_a_replica(pack: PolicyPack) -> None:
    assert "state-survives-node-loss" not in messages(pack, resources())  # every node backs its state up
    cfg = raw_config("cluster")
    del cfg["backups"]
    found = messages(pack, [copy.deepcopy(r) for r in plan_config(cfg, stack="unbacked").resources if r.custom])
    lost = found["state-survives-node-loss"]
    assert any("sonarr: its state (/config)" in m for m in lost)
    assert not any("immich-postgres:" in m for m in lost)  # its streaming replica is on another node
    assert not any(f"{s}:" in m for m in lost for s in ("node-exporter", "artwork-cache", "tdarr-node"))


def test_a_dri_device_on_swarm_is_reported(pack: PolicyPack) -> None:
    assert "swarm-devices" not in messages(pack, resources())  # the example's GPU node is NVIDIA
    cfg = raw_config("cluster")
    cfg["hosts"][0].update(gpu="intel", render_gid=105)
    found = messages(pack, [copy.deepcopy(r) for r in plan_config(cfg, stack="intel").resources if r.custom])
    assert sorted(m.splitlines()[-1].split(":")[0] for m in found["swarm-devices"]) == ["jellyfin", "tdarr-node"]
    assert "transcodes on the CPU" in found["swarm-devices"][0]


def test_single_host_stacks_are_not_judged_by_cluster_policies(pack: PolicyPack) -> None:
    found = messages(pack, [copy.deepcopy(r) for r in plan("prod").resources if r.custom])
    for policy in (
        "placement-satisfiable",
        "cluster-capacity",
        "no-sqlite-on-network-fs",
        "local-state-pinned",
        "state-survives-node-loss",
        "swarm-devices",
    ):
        assert policy not in found, found[policy]
