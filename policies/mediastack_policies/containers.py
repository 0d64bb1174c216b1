"""Per-container guardrails on docker.Container inputs (camelCase, as the analyzer sees them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
SOCKET_PROXY = "socket-proxy"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run")

Report = Callable[[str, str | None], None]


def _labels(props: Mapping[str, Any]) -> dict[str, str]:
    return {item.get("label"): item.get("value") for item in props.get("labels") or []}


def image_is_pinned(ref: str) -> str | None:
    """None when pinned; else why not. Handles registry ports (registry:5000/img) and digests."""
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref} has no tag; pin a version such as {ref}:1.2.3"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {ref} uses `latest`; pin a version"
    return None


def validate_pinned_images(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == REMOTE_IMAGE:
        problem = image_is_pinned(str(args.props.get("name", "")))
    elif args.resource_type == CONTAINER:
        problem = image_is_pinned(str(args.props.get("image", "")))
    else:
        return
    if problem:
        report(problem, None)


def validate_limits(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != CONTAINER:
        return
    props = args.props
    if not props.get("memory"):
        report("no memory limit; set one from the service's tier", None)
    if not props.get("cpus") and not props.get("cpuQuota"):
        report("no CPU limit; set one from the service's tier", None)
    reservation, memory = props.get("memoryReservation"), props.get("memory")
    if not reservation:
        report("no memory reservation; set one from the service's tier", None)
    elif memory and reservation > memory:
        report(f"memory reservation {reservation} MiB is above the limit {memory} MiB", None)


def validate_docker_socket(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != CONTAINER:
        return
    props = args.props
    service = _labels(props).get("mediastack.service")
    sources = [(m.get("source"), m.get("readOnly", False)) for m in props.get("mounts") or []]
    sources += [(v.get("hostPath"), v.get("readOnly", False)) for v in props.get("volumes") or []]
    for source, read_only in sources:
        if source not in DOCKER_SOCKETS:
            continue
        if service != SOCKET_PROXY:
            report(f"mounts {source}: only the socket proxy may reach the Docker API", None)
        elif not read_only:
            report(f"the socket proxy mounts {source} read-write; mount it read-only", None)


RESOURCE_POLICIES = [
    ResourceValidationPolicy(
        name="image-pinned",
        description="Images carry a version tag or digest, never `latest`.",
        validate=validate_pinned_images,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="container-limits",
        description="Every container has CPU and memory limits and a memory reservation not above its limit.",
        validate=validate_limits,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="docker-socket-only-via-proxy",
        description="Only the socket proxy mounts the Docker socket, and only read-only.",
        validate=validate_docker_socket,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
