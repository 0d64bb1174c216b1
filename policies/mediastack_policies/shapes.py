"""One view of a workload, from either resource shape the program can produce.

A single host gets `docker:index/container:Container`; a Swarm gets `docker:index/service:Service`.
Their inputs (camelCase, as the analyzer receives them) differ in layout and units; every policy
reads a Workload instead, so each rule is written once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mediastack_vocabulary import Label

from .secrets import is_secret, mark

# How a policy reports a violation: (message, urn or None), as pulumi_policy calls it.
Report = Callable[[str, str | None], None]

CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
WORKLOAD_TYPES = (CONTAINER, SERVICE)

MIB = 1024**2
SECRET = "[secret]"  # how mediastack's offline runner shows a secret value
UNKNOWN = "[unknown]"  # a value only known after deployment (another resource's output, at preview)


def plain(value: Any) -> Any:
    """A copy of pulumi_policy's props with unknown values replaced by UNKNOWN instead of raising.

    At preview, inputs that come from other resources' outputs (an image digest, a network name) are
    unknown, and touching one makes pulumi_policy skip the whole policy; reading them as UNKNOWN
    lets every check that does not need them still run. Secret markers survive the copy.
    """
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        out = {}
        for key in list(value.keys()):
            try:
                out[key] = plain(value[key])
            except Exception:  # pulumi_policy's UnknownValueError
                out[key] = UNKNOWN
        return mark(out) if is_secret(value) else out
    if isinstance(value, (list, tuple)) or (hasattr(value, "__getitem__") and hasattr(value, "__len__")):
        items = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except Exception:  # pulumi_policy's UnknownValueError
                items.append(UNKNOWN)
        return mark(items) if is_secret(value) else items
    return value


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    type: str = "bind"


@dataclass(frozen=True)
class Health:
    tests: tuple[str, ...]
    interval_s: float | None
    timeout_s: float | None
    start_period_s: float | None
    retries: int | None


@dataclass(frozen=True)
class Workload:
    kind: str  # container | service
    name: str
    service: str  # the mediastack.service label, else the name
    labels: Mapping[str, str]
    image: str
    cpus: float | None
    memory: int | None  # bytes
    memory_reservation: int | None  # bytes
    cpu_reservation: float | None
    memory_swap: int | None  # bytes; containers only
    health: Health | None
    privileged: bool
    network_mode: str | None
    pid_mode: str | None
    ipc_mode: str | None
    userns_mode: str | None
    mounts: tuple[Mount, ...]
    security_opts: tuple[str, ...]
    cap_adds: tuple[str, ...]
    cap_drops: tuple[str, ...]
    restart: str | None
    log_driver: str | None
    log_opts: Mapping[str, str]
    published_ports: tuple[int, ...]
    networks: tuple[str, ...]
    env: Mapping[str, Any]  # value, or SECRET, or the whole env SECRET when the list is a secret
    env_is_secret: bool
    devices: tuple[str, ...]
    group_adds: tuple[str, ...]
    gpu_request: bool
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def tier(self) -> str | None:
        return self.labels.get(Label.tier)

    @property
    def role(self) -> str | None:
        return self.labels.get(Label.role)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def seconds(value: Any) -> float | None:
    """Go durations ("30s", "1m30s") and Swarm nanoseconds to seconds; None when unset or unknown."""
    if value in (None, "", "0s", 0):
        return None
    if isinstance(value, (int, float)):
        return value / 1e9
    parts = _DURATION.findall(str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _labels(items: Any) -> dict[str, str]:
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    return {str(i.get("label")): str(i.get("value")) for i in items or [] if isinstance(i, Mapping)}


def _health(h: Any) -> Health | None:
    if not isinstance(h, Mapping):
        return None
    tests = tuple(str(t) for t in h.get("tests") or ())
    if not tests or tests[0] == "NONE":
        return None
    retries = h.get("retries")
    return Health(
        tests,
        seconds(h.get("interval")),
        seconds(h.get("timeout")),
        seconds(h.get("startPeriod")),
        int(retries) if retries is not None else None,
    )


def _env_list(envs: Any) -> tuple[dict[str, Any], bool]:
    """KEY=value lines to a map; a secret line's value becomes SECRET. True when the whole list is secret."""
    if envs == SECRET:
        return {}, True
    env: dict[str, Any] = {}
    for line in envs or []:
        if not isinstance(line, str) or line == SECRET:
            env[f"<secret {len(env)}>"] = SECRET
            continue
        key, _, value = line.partition("=")
        env[key] = SECRET if is_secret(line) else value
    return env, is_secret(envs)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def from_container(name: str, p: Mapping[str, Any]) -> Workload:
    labels = _labels(p.get("labels"))
    mounts = [
        Mount(
            str(m.get("source", "")),
            str(m.get("target", "")),
            bool(m.get("readOnly", False)),
            str(m.get("type", "bind")),
        )
        for m in p.get("mounts") or []
        if isinstance(m, Mapping)
    ]
    mounts += [
        Mount(str(v.get("hostPath", "")), str(v.get("containerPath", "")), bool(v.get("readOnly", False)))
        for v in p.get("volumes") or []
        if isinstance(v, Mapping) and v.get("hostPath")
    ]
    caps = p.get("capabilities") or {}
    env, env_secret = _env_list(p.get("envs"))
    memory = _number(p.get("memory"))
    reservation = _number(p.get("memoryReservation"))
    swap = _number(p.get("memorySwap"))
    shares = _number(p.get("cpuShares"))
    cpus = _number(p.get("cpus"))
    if cpus is None and _number(p.get("cpuQuota")):
        cpus = (_number(p.get("cpuQuota")) or 0) / (_number(p.get("cpuPeriod")) or 100000)
    return Workload(
        kind="container",
        name=str(p.get("name") or name),
        service=labels.get(Label.service, name),
        labels=labels,
        image=str(p.get("image", "")),
        cpus=cpus,
        memory=int(memory * MIB) if memory else None,
        memory_reservation=int(reservation * MIB) if reservation else None,
        cpu_reservation=shares / 1024 if shares else None,
        memory_swap=int(swap * MIB) if swap else None,
        health=_health(p.get("healthcheck")),
        privileged=bool(p.get("privileged", False)),
        network_mode=p.get("networkMode"),
        pid_mode=p.get("pidMode"),
        ipc_mode=p.get("ipcMode"),
        userns_mode=p.get("usernsMode"),
        mounts=tuple(mounts),
        security_opts=tuple(p.get("securityOpts") or ()),
        cap_adds=tuple(caps.get("adds") or ()) if isinstance(caps, Mapping) else (),
        cap_drops=tuple(caps.get("drops") or ()) if isinstance(caps, Mapping) else (),
        restart=p.get("restart"),
        log_driver=p.get("logDriver"),
        log_opts=dict(p.get("logOpts") or {}),
        published_ports=tuple(
            int(x.get("external") or x.get("internal") or 0)
            for x in p.get("ports") or []
            if isinstance(x, Mapping) and (x.get("external") or x.get("internal"))
        ),
        networks=tuple(str(n.get("name")) for n in p.get("networksAdvanced") or [] if isinstance(n, Mapping)),
        env=env,
        env_is_secret=env_secret,
        devices=tuple(str(d.get("hostPath")) for d in p.get("devices") or [] if isinstance(d, Mapping)),
        group_adds=tuple(str(g) for g in p.get("groupAdds") or ()),
        gpu_request=bool(p.get("deviceRequests") or p.get("gpus")),
        raw=p,
    )


def from_service(name: str, p: Mapping[str, Any]) -> Workload:
    task = p.get("taskSpec") or {}
    spec = task.get("containerSpec") or {}
    resources = task.get("resources") or {}
    limits = resources.get("limits") or {}
    reservation = resources.get("reservation") or {}
    labels = {**_labels(p.get("labels")), **_labels(spec.get("labels"))}
    env_raw = spec.get("env")
    env_secret = env_raw == SECRET or is_secret(env_raw)
    env = {} if env_raw == SECRET else {str(k): SECRET if is_secret(v) else v for k, v in (env_raw or {}).items()}
    log = task.get("logDriver") or {}
    restart = task.get("restartPolicy") or {}
    nano = _number(limits.get("nanoCpus"))
    nano_res = _number(reservation.get("nanoCpus"))
    privileges = spec.get("privileges") or {}
    generic = reservation.get("genericResources") or {}
    return Workload(
        kind="service",
        name=str(p.get("name") or name),
        service=labels.get(Label.service, name),
        labels=labels,
        image=str(spec.get("image", "")),
        cpus=nano / 1e9 if nano else None,
        memory=int(limits["memoryBytes"]) if limits.get("memoryBytes") else None,
        memory_reservation=int(reservation["memoryBytes"]) if reservation.get("memoryBytes") else None,
        cpu_reservation=nano_res / 1e9 if nano_res else None,
        memory_swap=None,
        health=_health(spec.get("healthcheck")),
        privileged=False,
        network_mode=None,
        pid_mode=None,
        ipc_mode=spec.get("isolation") and None,
        userns_mode=None,
        mounts=tuple(
            Mount(
                str(m.get("source", "")),
                str(m.get("target", "")),
                bool(m.get("readOnly", False)),
                str(m.get("type", "bind")),
            )
            for m in spec.get("mounts") or []
            if isinstance(m, Mapping)
        ),
        security_opts=("no-new-privileges:true",) if privileges.get("noNewPrivileges") else (),
        cap_adds=tuple(spec.get("capAdds") or ()),
        cap_drops=tuple(spec.get("capDrops") or ()),
        restart=restart.get("condition"),
        log_driver=log.get("name"),
        log_opts=dict(log.get("options") or {}),
        published_ports=tuple(
            int(x["publishedPort"])
            for x in (p.get("endpointSpec") or {}).get("ports") or []
            if isinstance(x, Mapping) and x.get("publishedPort")
        ),
        # `id` takes a network's name or id (the provider's `name` is deprecated for it)
        networks=tuple(
            str(n.get("id") or n.get("name")) for n in task.get("networksAdvanceds") or [] if isinstance(n, Mapping)
        ),
        env=env,
        env_is_secret=env_secret,
        devices=(),
        group_adds=tuple(spec.get("groups") or ()),
        gpu_request=bool(generic.get("discreteResourcesSpecs") or generic.get("namedResourcesSpecs")),
        raw=p,
    )


def workload(resource_type: str, name: str, props: Mapping[str, Any]) -> Workload | None:
    if resource_type == CONTAINER:
        return from_container(name, plain(props))
    if resource_type == SERVICE:
        return from_service(name, plain(props))
    return None


class NotApplicable(Exception):
    """The check has no meaning for this resource shape (e.g. Swarm services have no swap setting)."""
