"""The starter guardrails, called as CrossGuard calls them, on the plans of this repository's stacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "policies"))
from conftest import plan
from mediastack_policies import RESOURCE_POLICIES
from mediastack_policies.containers import image_is_pinned

CONTAINER = "docker:index/container:Container"


def validate(resource_type: str, props: dict, name: str = "r") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    args = ResourceValidationArgs(
        resource_type=resource_type,
        props=props,
        urn=f"urn:pulumi:t::p::{resource_type}::{name}",
        name=name,
        opts=PolicyResourceOptions(
            protect=False,
            ignore_changes=[],
            delete_before_replace=None,
            aliases=[],
            custom_timeouts=None,
            additional_secret_outputs=[],
        ),
        provider=None,
    )
    for policy in RESOURCE_POLICIES:
        policy.validate(args, lambda message, urn=None, p=policy.name: found.append((p, message)))
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_repository_stacks_pass(stack: str) -> None:
    for r in plan(stack).resources:
        assert validate(r.type, r.inputs, r.name) == [], r.name


GOOD = {
    "image": "traefik:v3.5.3",
    "memory": 512,
    "cpus": "1",
    "memoryReservation": 128,
    "labels": [{"label": "mediastack.service", "value": "traefik"}],
}


@pytest.mark.parametrize(
    ("props", "policy", "words"),
    [
        ({**GOOD, "image": "traefik"}, "image-pinned", "no tag"),
        ({**GOOD, "image": "traefik:latest"}, "image-pinned", "`latest`"),
        ({**GOOD, "image": "registry:5000/traefik"}, "image-pinned", "no tag"),
        ({k: v for k, v in GOOD.items() if k != "memory"}, "container-limits", "no memory limit"),
        ({k: v for k, v in GOOD.items() if k != "cpus"}, "container-limits", "no CPU limit"),
        ({**GOOD, "memoryReservation": 1024}, "container-limits", "above the limit"),
        (
            {**GOOD, "mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s", "readOnly": True}]},
            "docker-socket-only-via-proxy",
            "only the socket proxy",
        ),
        (
            {
                **GOOD,
                "labels": [{"label": "mediastack.service", "value": "socket-proxy"}],
                "mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}],
            },
            "docker-socket-only-via-proxy",
            "read-only",
        ),
    ],
)
def test_violations_are_reported(props: dict, policy: str, words: str) -> None:
    assert validate(CONTAINER, GOOD) == []
    found = validate(CONTAINER, props)
    assert any(p == policy and words in m for p, m in found), found


def test_pinning_rules() -> None:
    assert image_is_pinned("lscr.io/linuxserver/sonarr:4.0.15") is None
    assert image_is_pinned("ghcr.io/x/y@sha256:" + "a" * 64) is None
    assert image_is_pinned("registry:5000/img:1.0") is None
    assert image_is_pinned("registry:5000/img") is not None
