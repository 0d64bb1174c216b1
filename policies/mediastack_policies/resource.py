"""Resource policies: one workload (Container or Swarm Service), network or host command at a time."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from mediastack_vocabulary import INTERNAL_NETWORKS, Label

from .privileges import (
    ALLOWED_DEVICES,
    check_capabilities,
    check_devices,
    check_identity_env,
    check_namespaces,
    check_no_new_privileges,
    check_privileged,
    check_secret_env,
    check_secret_in_container_env,
    check_socket,
)
from .shapes import (
    LOCAL_COMMAND,
    MIB,
    NETWORK,
    REMOTE_COMMAND,
    REMOTE_IMAGE,
    UNKNOWN,
    NotApplicable,
    Report,
    Workload,
    workload,
)

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY


def config(args: ResourceValidationArgs) -> dict[str, Any]:
    return dict(args.get_config() or {})


def _schema(properties: dict[str, Any]) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


def _on_workloads(check: Callable[[Workload, dict[str, Any], Report], None]):
    """Adapt a check over a Workload into a CrossGuard validate function for both resource shapes."""

    def validate(args: ResourceValidationArgs, report: Report) -> None:
        w = workload(args.resource_type, args.name, args.props)
        if w is None:
            return
        try:
            check(w, config(args), report)
        except NotApplicable as reason:
            args.not_applicable(str(reason))

    validate.__name__ = check.__name__
    return validate


# -- limits and reservations ----------------------------------------------------------------------

TIER_BOUNDS = {
    "critical": {"max_cpus": 16, "max_memory_mib": 32768},
    "standard": {"max_cpus": 4, "max_memory_mib": 8192},
    "utility": {"max_cpus": 1, "max_memory_mib": 1024},
}


def check_limits(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if not w.memory:
        report(f"{w.service}: no memory limit; set one from the service's tier", None)
    if not w.cpus and cfg.get("require_cpu_limit", True):
        report(f"{w.service}: no CPU limit; set one from the service's tier", None)
    bounds = (cfg.get("tier_bounds") or TIER_BOUNDS).get(w.tier or "", None)
    if w.tier and bounds is None:
        report(f"{w.service}: unknown tier {w.tier!r}", None)
        return
    if bounds:
        if w.cpus and w.cpus > bounds["max_cpus"]:
            report(f"{w.service}: CPU limit {w.cpus:g} is above the {w.tier} tier's bound {bounds['max_cpus']}", None)
        if w.memory and w.memory > bounds["max_memory_mib"] * MIB:
            report(
                f"{w.service}: memory limit {w.memory // MIB} MiB is above the {w.tier} tier's bound "
                f"{bounds['max_memory_mib']} MiB",
                None,
            )


def check_reservation(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if not w.memory_reservation:
        report(f"{w.service}: no memory reservation; set one from the service's tier", None)
    elif w.memory and w.memory_reservation > w.memory:
        report(
            f"{w.service}: memory reservation {w.memory_reservation // MIB} MiB is above its limit "
            f"{w.memory // MIB} MiB",
            None,
        )


def check_health(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.health is None:
        if w.image.split("@")[0].rsplit(":", 1)[0] in cfg.get("images_without_shell", []):
            return
        report(f"{w.service}: no health check; add one on the app's own endpoint", None)
        return
    h = w.health
    lo, hi = cfg.get("min_interval_s", 5), cfg.get("max_interval_s", 300)
    if h.interval_s is None or not lo <= h.interval_s <= hi:
        report(f"{w.service}: health check interval {h.interval_s}s is outside {lo}-{hi}s", None)
    if (
        h.timeout_s is None
        or h.timeout_s > cfg.get("max_timeout_s", 60)
        or (h.interval_s and h.timeout_s >= h.interval_s)
    ):
        report(
            f"{w.service}: health check timeout {h.timeout_s}s must be set, below the interval and at most "
            f"{cfg.get('max_timeout_s', 60)}s",
            None,
        )
    if h.start_period_s is None or h.start_period_s > cfg.get("max_start_period_s", 600):
        report(
            f"{w.service}: health check start period {h.start_period_s}s must be set and at most "
            f"{cfg.get('max_start_period_s', 600)}s",
            None,
        )
    rlo, rhi = cfg.get("min_retries", 1), cfg.get("max_retries", 10)
    if h.retries is None or not rlo <= h.retries <= rhi:
        report(f"{w.service}: health check retries {h.retries} outside {rlo}-{rhi}", None)


# -- images -------------------------------------------------------------------------------------------


def image_problem(ref: str, require_digest: bool = False) -> str | None:
    """None when pinned; else why not. Handles registry ports (registry:5000/img) and digests."""
    if "@sha256:" in ref:
        return None
    if require_digest:
        return f"image {ref} is not pinned by digest (the pack's require_digest is on)"
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref} has no tag; pin a version such as {ref}:1.2.3"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {ref} uses `latest`; pin a version"
    return None


def validate_image(args: ResourceValidationArgs, report: Report) -> None:
    cfg = config(args)
    if args.resource_type == REMOTE_IMAGE:
        ref = str(args.props.get("name", ""))
        # The container runs the digest the image resolved to; the tag pin is checked here.
        problem = image_problem(ref, False)
        if problem is None and cfg.get("require_digest", False) and "@sha256:" not in ref:
            problem = f"image {ref} is not pinned by digest (the pack's require_digest is on)"
    else:
        w = workload(args.resource_type, args.name, args.props)
        if w is None:
            return
        label = w.labels.get(Label.image)
        problem = None if w.image == UNKNOWN and label else image_problem(w.image)
        if problem is None and label and "@sha256:" not in w.image:
            problem = image_problem(label, cfg.get("require_digest", False))
        elif problem is None and cfg.get("require_digest", False) and label and "@sha256:" not in label:
            problem = f"image {label} is not pinned by digest (the pack's require_digest is on)"
    if problem:
        report(problem, None)


# -- privileges -----------------------------------------------------------------------------------------


def check_restart(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    good = ("unless-stopped", "always", "on-failure") if w.kind == "container" else ("any", "on-failure")
    if w.restart not in good:
        report(f"{w.service}: restart policy {w.restart!r}; use one of {', '.join(good)}", None)
    retries = w.raw.get("maxRetryCount") if w.kind == "container" else None
    if w.restart == "on-failure" and retries and retries > cfg.get("max_restart_retries", 5):
        report(f"{w.service}: on-failure retries {retries} above {cfg.get('max_restart_retries', 5)}", None)


_SIZE = re.compile(r"^(\d+)([kmg]?)$", re.I)


def _log_size_mib(text: str) -> float | None:
    m = _SIZE.match(str(text))
    if not m:
        return None
    return int(m.group(1)) * {"": 1 / MIB, "k": 1 / 1024, "m": 1, "g": 1024}[m.group(2).lower()]


def log_problem(w: Workload, cfg: dict[str, Any]) -> str | None:
    max_mib, max_files = cfg.get("max_log_size_mib", 100), cfg.get("max_log_files", 10)
    driver = w.log_driver or ("json-file" if w.kind == "container" else None)
    if driver in ("none", "syslog", "journald", "fluentd", "gelf", "awslogs", "splunk", "loki"):
        return None  # shipped elsewhere: rotation is that system's job
    if driver not in ("local", "json-file"):
        return f"{w.service}: log driver {driver!r} is not bounded; use local or json-file with max-size"
    size = w.log_opts.get("max-size")
    if driver == "json-file" and size is None:
        return f"{w.service}: json-file logs without max-size grow without bound"
    if size is not None and ((_log_size_mib(size) or float("inf")) > max_mib):
        return f"{w.service}: log max-size {size} is above {max_mib}m"
    files = int(w.log_opts.get("max-file", 1 if driver == "json-file" else 5))
    if files > max_files:
        return f"{w.service}: log max-file {files} is above {max_files}"
    return None


def validate_logs(args: ResourceValidationArgs, report: Report) -> None:
    w = workload(args.resource_type, args.name, args.props)
    if w is not None and (problem := log_problem(w, config(args))):
        report(problem, None)


def remediate_logs(args: ResourceValidationArgs) -> Mapping[str, Any] | None:
    """Safe and unambiguous: bounded `local` logs on a container that has none."""
    w = workload(args.resource_type, args.name, args.props)
    if w is None or w.kind != "container" or log_problem(w, config(args)) is None:
        return None
    return {**args.props, "logDriver": "local", "logOpts": {"max-size": "10m", "max-file": "5"}}


def check_swap(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.kind != "container":
        raise NotApplicable("Swarm services cannot set swap; the host's vm.swappiness governs them")
    if w.tier != "critical":
        return
    if not w.memory or w.memory_swap != w.memory:
        report(f"{w.service}: critical-tier container can swap; set memory_swap equal to memory", None)


def check_ports(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    allowed = set(cfg.get("port_publishers", ["traefik"]))
    if w.published_ports and w.service not in allowed:
        report(
            f"{w.service}: publishes {', '.join(map(str, w.published_ports))} on the host; route it through the "
            "reverse proxy or allow-list it",
            None,
        )
    if w.raw.get("publishAllPorts"):
        report(f"{w.service}: publishes all its ports", None)


# -- networks and host commands ----------------------------------------------------------------------

INTERNAL_ROLES = tuple(sorted(r.value for r in INTERNAL_NETWORKS))


def validate_internal_network(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != NETWORK:
        return
    labels = {i.get("label"): i.get("value") for i in args.props.get("labels") or []}
    role = labels.get(Label.network) or str(args.props.get("name", "")).rsplit("-", 1)[-1]
    if role in config(args).get("internal_networks", INTERNAL_ROLES) and not args.props.get("internal"):
        report(f"network {args.props.get('name')} ({role}) must be internal: nothing on it needs a route out", None)


def validate_command_reverts(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type not in (LOCAL_COMMAND, REMOTE_COMMAND):
        return
    if not args.props.get("delete"):
        report(f"host command {args.name} changes a host but has no delete step to revert it", None)


def _policy(
    name: str, description: str, validate, level=MANDATORY, schema: dict[str, Any] | None = None, remediate=None
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=_schema(schema) if schema else None,
        remediate=remediate,
    )


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_LIST = {"type": "array", "items": {"type": "string"}}

RESOURCE_POLICIES = [
    _policy(
        "resource-limits",
        "CPU and memory limits present and within the tier's bounds.",
        _on_workloads(check_limits),
        schema={
            "require_cpu_limit": {"type": "boolean", "default": True},
            "tier_bounds": {"type": "object", "default": TIER_BOUNDS},
        },
    ),
    _policy(
        "memory-reservation",
        "A memory reservation is present and not above the limit.",
        _on_workloads(check_reservation),
    ),
    _policy(
        "health-check",
        "A health check with interval, timeout, start period and retries within bounds.",
        _on_workloads(check_health),
        schema={
            "min_interval_s": {**_NUM, "default": 5},
            "max_interval_s": {**_NUM, "default": 300},
            "max_timeout_s": {**_NUM, "default": 60},
            "max_start_period_s": {**_NUM, "default": 600},
            "min_retries": {**_INT, "default": 1},
            "max_retries": {**_INT, "default": 10},
            "images_without_shell": {**_LIST, "default": ["ghcr.io/onedr0p/exportarr"]},
        },
    ),
    _policy(
        "image-pinned",
        "Images carry a version tag (no `latest`), or a digest when require_digest is on.",
        validate_image,
        schema={"require_digest": {"type": "boolean", "default": False}},
    ),
    _policy("no-privileged", "No container runs privileged.", _on_workloads(check_privileged)),
    _policy(
        "no-host-namespaces",
        "No host network, PID, IPC or user namespace.",
        _on_workloads(check_namespaces),
        schema={
            "host_namespace_services": {**_LIST, "default": []},
            "host_network_services": {**_LIST, "default": ["node-exporter"]},
        },
    ),
    _policy(
        "docker-socket-via-proxy",
        "Only the allow-listed socket proxy mounts the Docker socket, read-only.",
        _on_workloads(check_socket),
        schema={
            "socket_proxy_services": {**_LIST, "default": ["socket-proxy"]},
            "host_root_readers": {**_LIST, "default": ["node-exporter"]},
        },
    ),
    _policy(
        "host-devices-allow-list",
        "Host devices only from the allow-list: GPU render nodes, NVIDIA devices, the tunnel for the VPN container.",
        _on_workloads(check_devices),
        schema={"allowed_devices": {**_LIST, "default": list(ALLOWED_DEVICES)}},
    ),
    _policy(
        "no-new-privileges", "no-new-privileges is set on every container.", _on_workloads(check_no_new_privileges)
    ),
    _policy(
        "capabilities-allow-list",
        "All capabilities dropped; only allow-listed ones added back.",
        _on_workloads(check_capabilities),
        schema={
            "allowed_capabilities": {
                **_LIST,
                "default": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "KILL", "NET_BIND_SERVICE"],
            },
            "require_drop_all": {"type": "boolean", "default": True},
            "vpn_capabilities": {**_LIST, "default": ["NET_ADMIN"]},
        },
    ),
    _policy(
        "restart-policy",
        "A restart policy is set (on-failure retries bounded).",
        _on_workloads(check_restart),
        schema={"max_restart_retries": {**_INT, "default": 5}},
    ),
    _policy(
        "log-rotation",
        "Logs are rotated and bounded.",
        validate_logs,
        schema={"max_log_size_mib": {**_INT, "default": 100}, "max_log_files": {**_INT, "default": 10}},
        remediate=remediate_logs,
    ),
    _policy(
        "critical-no-swap", "Critical-tier containers cannot swap (memory_swap == memory).", _on_workloads(check_swap)
    ),
    _policy(
        "host-ports-proxy-only",
        "Only the reverse proxy (or allow-listed services) publishes host ports.",
        _on_workloads(check_ports),
        schema={"port_publishers": {**_LIST, "default": ["traefik"]}},
    ),
    _policy(
        "secret-env",
        "Environment variables that look like secrets carry Pulumi secrets.",
        _on_workloads(check_secret_env),
    ),
    _policy(
        "secret-not-in-container-env",
        "On one host no container carries a secret value in its environment (anyone who can inspect it reads it): "
        "secrets go as files the image reads.",
        _on_workloads(check_secret_in_container_env),
        schema={"allowed_services": {**_LIST, "default": []}},
    ),
    _policy(
        "identity-env",
        "PUID and PGID are a real user (not root), UMASK three octal digits: the identity the apps drop to.",
        _on_workloads(check_identity_env),
    ),
    _policy(
        "internal-networks",
        "The database, monitoring and socket networks are internal.",
        validate_internal_network,
        schema={"internal_networks": {**_LIST, "default": list(INTERNAL_ROLES)}},
    ),
    _policy(
        "host-commands-revert",
        "Every command that changes a host has a delete (revert) step.",
        validate_command_reverts,
    ),
]
