"""Resource policies about privileges: what a workload may reach of its host (the engine socket, devices,
namespaces, capabilities) and what its environment may hold (secrets, identity)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from mediastack_vocabulary import Role

from .shapes import (
    SECRET,
    NotApplicable,
    Report,
    Workload,
)

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


# A value that is only the path of a secret file, as Unpackerr takes it (`filepath:` prefix, golift/cnfgfile).
_FILE_PATH_VALUE = re.compile(r"(filepath:)?/run/secrets/[\w.-]+")


def _names_a_file(key: str, value: object) -> bool:
    """KEY_FILE, KEY__FILE (Grafana), FILE__KEY (linuxserver.io), KEY_SECRETFILE (gluetun) and HOMEPAGE_FILE_KEY
    (Homepage) name a file holding the secret; so does a value that is only a secret file's path."""
    return (
        key.endswith(("_FILE", "_SECRETFILE"))
        or key.startswith(("FILE__", "HOMEPAGE_FILE_"))
        or bool(_FILE_PATH_VALUE.fullmatch(str(value)))
    )


def check_secret_env(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    if w.env_is_secret:
        return
    for key, value in w.env.items():
        if SECRET_NAME.search(key) and value not in (SECRET, "") and not _names_a_file(str(key), value):
            report(
                f"{w.service}: environment variable {key} looks like a secret but is plain; pass a Pulumi "
                "secret (pulumi.Output.secret / a generated password)",
                None,
            )


def check_secret_in_container_env(w: Workload, cfg: dict[str, Any], report: Report) -> None:
    """On one host anyone who can inspect a container (`GET /containers/{id}/json`, the socket proxy's readers
    included) reads its environment: a secret goes as a file the image reads, never as a value in the env."""
    if w.kind != "container" or w.service in set(cfg.get("allowed_services") or ()):
        return
    fix = (
        "Docker shows a container's environment to anyone who can inspect it; pass the secret as a file the image "
        "reads (<VAR>_FILE, FILE__<VAR>, <VAR>__FILE, <VAR>_SECRETFILE) from a read-only bind"
    )
    if w.env_is_secret:
        report(f"{w.service}: its environment is a Pulumi secret, so it carries a secret value; {fix}", None)
        return
    carried = sorted(k for k, v in w.env.items() if v == SECRET)
    if carried:
        report(f"{w.service}: environment variable {', '.join(carried)} carries a secret value; {fix}", None)


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
