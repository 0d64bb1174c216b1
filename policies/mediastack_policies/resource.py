"""Resource policies: one workload (Container or Swarm Service), network or host command at a time."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from mediastack_vocabulary import INTERNAL_NETWORKS, Label, Role

from .shapes import (
    LOCAL_COMMAND,
    MIB,
    NETWORK,
    REMOTE_COMMAND,
    REMOTE_IMAGE,
    SECRET,
    UNKNOWN,
    Report,
    Workload,
    workload,
)

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

# The engine's API sockets, under both names of the run directory (/var/run is a link to /run).
ENGINE_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)
# Host devices a container may get: GPU render nodes (VAAPI/QSV), the NVIDIA devices, and the tunnel device,
# which only the VPN container may have.
ALLOWED_DEVICES = (
    r"/dev/dri",
    r"/dev/dri/renderD\d+",
    r"/dev/dri/card\d+",
    r"/dev/nvidia\d+",
    r"/dev/nvidiactl",
    r"/dev/nvidia-uvm",
    r"/dev/nvidia-uvm-tools",
    r"/dev/nvidia-modeset",
    r"/dev/nvidia-caps/nvidia-cap\d+",
)
TUN_DEVICE = "/dev/net/tun"
VPN_ROLE = Role.vpn
DANGEROUS_CAPS = (
    "ALL",
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "SYS_RAWIO",
    "SYS_TIME",
    "BPF",
    "PERFMON",
    "MAC_ADMIN",
)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PASS$|^PASS$|TOKEN|API_?KEY|SECRET|PRIVATE_?KEY|CREDENTIAL)", re.I)


def config(args: ResourceValidationArgs) -> dict[str, Any]:
    return dict(args.get_config() or {})


def _schema(properties: dict[str, Any]) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


class NotApplicable(Exception):
    """The check has no meaning for this resource shape (e.g. Swarm services have no swap setting)."""


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


def check_privileged(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.kind == "service":
        raise NotApplicable("Swarm services cannot run privileged")
    if w.privileged:
        report(f"{w.service}: runs privileged; give it the devices and capabilities it needs instead", None)


def check_namespaces(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    allowed = set(cfg.get("host_namespace_services", []))
    if w.service in allowed:
        return
    # node-exporter reads the host's network counters from its own namespace (upstream runs it with --net=host).
    host_network = set(cfg.get("host_network_services", ["node-exporter"]))
    for what, mode in (("network", w.network_mode), ("PID", w.pid_mode), ("IPC", w.ipc_mode), ("user", w.userns_mode)):
        if mode == "host" and not (what == "network" and w.service in host_network):
            report(f"{w.service}: shares the host's {what} namespace", None)


def normal_path(path: str) -> str:
    """A host path as the kernel resolves it: repeated slashes, `.` and `..` folded (`//run/./docker.sock`,
    `/var/run/..`). Not absolute (a named volume): unchanged."""
    if not path.startswith("/"):
        return path
    return posixpath.normpath("/" + path.lstrip("/"))  # normpath keeps a leading `//`; the kernel does not


def reached_socket(source: str) -> str | None:
    """The engine socket a bind of `source` exposes: the socket itself, or a directory above it (`/`, `/run`)."""
    path = normal_path(source)
    if not path.startswith("/"):
        return None
    for socket in ENGINE_SOCKETS:
        if path == socket or socket.startswith(path.rstrip("/") + "/"):
            return socket
    return None


def _user(w: Workload) -> str:
    raw = w.raw
    if w.kind == "service":
        raw = (raw.get("taskSpec") or {}).get("containerSpec") or {}
    return str(raw.get("user") or "")


def _runs_as_root(w: Workload) -> bool:
    user = _user(w).split(":")[0]
    return user in ("", "0", "root")


def check_socket(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    proxies = set(cfg.get("socket_proxy_services", ["socket-proxy"]))
    # Readers of the host's whole filesystem that run as an unprivileged user: the socket (root:docker, 0660)
    # stays closed to them.
    root_readers = set(cfg.get("host_root_readers", ["node-exporter"]))
    for m in w.mounts:
        socket = reached_socket(m.source)
        if socket is None:
            continue
        path = normal_path(m.source)
        if w.service in proxies and path in ENGINE_SOCKETS:
            if not m.read_only:
                report(f"{w.service}: mounts {m.source} read-write; mount it read-only", None)
            continue
        if path != socket and w.service in root_readers and not _runs_as_root(w) and m.read_only:
            continue
        shown = m.source if path == m.source else f"{m.source} (= {path})"
        report(
            f"{w.service}: mounts {shown}, which reaches {socket}; only the socket proxy may reach the Docker "
            "API (a read-only mount of the socket still gives the whole engine)",
            None,
        )


def check_devices(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    allowed = [re.compile(p) for p in cfg.get("allowed_devices", list(ALLOWED_DEVICES))]
    # A Swarm service has no device list: a device reaches it as a bind mount under /dev.
    paths = [*w.devices, *(m.source for m in w.mounts if normal_path(m.source).startswith("/dev"))]
    for device in paths:
        path = normal_path(device)
        if path == TUN_DEVICE:
            if w.role != VPN_ROLE:
                report(
                    f"{w.service}: gets {TUN_DEVICE}, which only the VPN container may have (role {VPN_ROLE}); "
                    "share the VPN container's network instead",
                    None,
                )
            continue
        if not any(p.fullmatch(path) for p in allowed):
            report(
                f"{w.service}: gets host device {device}, not on the allow-list (GPU render nodes /dev/dri/*, the "
                f"NVIDIA devices, {TUN_DEVICE} for the VPN container)",
                None,
            )


def check_no_new_privileges(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.kind == "service":
        raise NotApplicable("Swarm services have no no-new-privileges setting; set it in daemon.json (CIS 5.26)")
    if not any(o.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges") for o in w.security_opts):
        report(f"{w.service}: no-new-privileges is not set", None)


def check_capabilities(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    allowed = set(
        cfg.get(
            "allowed_capabilities", ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "KILL", "NET_BIND_SERVICE"]
        )
    )
    # A VPN client sets up its tunnel, routes and kill-switch firewall in its own network namespace (gluetun's
    # README: cap_add NET_ADMIN with /dev/net/tun). There NET_ADMIN reaches that namespace only, never the host's.
    own_namespace = w.role == "vpn" and (w.network_mode or "bridge") not in ("host",)
    vpn_caps = set(cfg.get("vpn_capabilities", ["NET_ADMIN"])) if own_namespace else set()
    for cap in w.cap_adds:
        name = cap.upper().removeprefix("CAP_")
        if name in vpn_caps:
            continue
        if name in DANGEROUS_CAPS:
            report(f"{w.service}: adds {name}, which gives away the host", None)
        elif name not in allowed:
            report(f"{w.service}: adds capability {name}, not in the allow-list {sorted(allowed)}", None)
    if cfg.get("require_drop_all", True) and "ALL" not in {c.upper() for c in w.cap_drops}:
        report(f"{w.service}: does not drop ALL capabilities before adding back what it needs", None)


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


def _names_a_file(key: str) -> bool:
    """KEY_FILE, KEY__FILE (Grafana) and FILE__KEY (linuxserver.io) name a file holding the secret."""
    return key.endswith("_FILE") or key.startswith("FILE__")


def check_secret_env(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.env_is_secret:
        return
    for key, value in w.env.items():
        if SECRET_NAME.search(key) and value not in (SECRET, "") and not _names_a_file(str(key)):
            report(
                f"{w.service}: environment variable {key} looks like a secret but is plain; pass a Pulumi "
                "secret (pulumi.Output.secret / a generated password)",
                None,
            )


def check_identity_env(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    """linuxserver.io images drop to PUID:PGID: 0 would run the app as root, past the stack's identity checks."""
    if w.env_is_secret:
        return
    for key in ("PUID", "PGID"):
        value = w.env.get(key)
        if value is None or value == SECRET:
            continue
        text = str(value)
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            report(f"{w.service}: {key}={text} would run the app as root or as no user; set identity.{key.lower()} to "
                   "the data root's owner (not 0) and remove it from the service's env", None)  # fmt: skip
    umask = w.env.get("UMASK")
    if umask is not None and umask != SECRET and not re.fullmatch(r"0?[0-7]{3}", str(umask)):
        report(f"{w.service}: UMASK={umask} is not three octal digits; set identity.umask (e.g. 002)", None)


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
