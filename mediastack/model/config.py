"""The typed stack config: every key under the `mediastack:` Pulumi config namespace.

Parsed once, in __main__.py, before any resource is registered. Nothing downstream reads raw
config. `docs/config.md` is generated from these models (`python -m mediastack_cli.docs`).
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from enum import StrEnum
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from mediastack.model.units import GIB, MIB, format_rate, format_size, parse_rate, parse_size

NAMESPACE = "mediastack"

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "examples": ["512MiB", "8GiB"]}),
]

Rate = Annotated[
    int,
    BeforeValidator(parse_rate),
    PlainSerializer(format_rate, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "examples": ["40mbit", "1gbit"]}),
]

# The bridge the download clients reach the internet through; named so the host's shaping can find it.
DOWNLOADS_BRIDGE = "ms-downloads"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Gpu(StrEnum):
    none = "none"
    intel = "intel"
    amd = "amd"
    nvidia = "nvidia"


class StorageKind(StrEnum):
    ssd = "ssd"
    hdd = "hdd"


class HostRole(StrEnum):
    manager = "manager"  # a Swarm manager (the first host inits the swarm)
    worker = "worker"  # runs services
    storage = "storage"  # holds a brick of the shared data volume (GlusterFS)


class TierName(StrEnum):
    critical = "critical"
    standard = "standard"
    utility = "utility"


# Every pattern is matched whole (fullmatch; `$` would let a trailing newline through) and spells its
# characters out in ASCII, so no value that reaches a script, a unit or an app's config can carry code.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_PORT = re.compile(r"[0-9]{1,5}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@(?P<domain>[A-Za-z0-9.-]{1,253})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# URL characters that are data in a URL but code or syntax elsewhere (quotes, backticks, $, \, braces, space).
_URL_REST = re.compile(r"[A-Za-z0-9._~!&()*+,;=:@%/?#\[\]-]*")

# Directories a data root may never be, or lie under: the system's own trees (and Docker's state).
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lock",
    "/var/lib/docker",
    "/var/lib/mediastack",
)
# Directories a data root may lie under but never be (each holds other things too).
SYSTEM_PARENTS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp")


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("must be an absolute path such as /srv/media")
    if not _PATH.fullmatch(value):
        raise ValueError(
            "may hold only ASCII letters, digits and . _ + @ - between slashes (no spaces, quotes, $, "
            "control characters or other symbols); use a path such as /srv/media"
        )
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("must not contain '..'")
    return "/" + "/".join(parts)  # normalised: no //, /./ or trailing slash, so comparisons are of paths


def _data_root(value: str) -> str:
    if value in SYSTEM_PARENTS or any(value == t or value.startswith(t + "/") for t in SYSTEM_TREES):
        raise ValueError(
            "is the system's own directory (or under one); give the stack a directory of its own such as /srv/media"
        )
    return value


AbsPath = Annotated[str, BeforeValidator(_absolute_path)]
DataPath = Annotated[str, BeforeValidator(_absolute_path), AfterValidator(_data_root)]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text: {what}")
    if _CONTROL.search(value):
        raise ValueError(f"must not hold line breaks or control characters: {what}")
    return value


def _host_address(v: Any) -> str:
    if not isinstance(v, str) or "%" in v:
        raise ValueError("must be an IP address or a DNS name such as media.lan")
    try:
        ipaddress.ip_address(v)
        return v
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(v):
        raise ValueError("must be an IP address or a DNS name such as media.lan (lower case)")
    return v


def _port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and 1 <= int(text) <= 65535


def _split_host_port(text: str) -> tuple[str, str]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`, split; ValueError when the port is not 1..65535."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address goes in brackets: [2001:db8::1]:8080")
        port = rest[1:]
        if rest and not port:
            raise ValueError("the port after ':' is missing")
    elif text.count(":") > 1:
        host, port = text, ""
    else:
        host, _, port = text.partition(":")
        if text.endswith(":"):
            raise ValueError("the port after ':' is missing")
    if port and not _port(port):
        raise ValueError(f"port {port!r} must be a number from 1 to 65535")
    return host, port


def _email(v: Any) -> str:
    m = _EMAIL.fullmatch(v) if isinstance(v, str) else None
    if m is None or not _HOSTNAME.fullmatch(m["domain"].lower()) or "." not in m["domain"]:
        raise ValueError("must be an e-mail address such as admin@example.org")
    return v


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _url(v: Any, plain_http_local_only: bool = False) -> str:
    """An http(s) URL whose host is an address or DNS name and whose rest holds no shell or YAML syntax."""
    from urllib.parse import urlsplit

    if not isinstance(v, str):
        raise ValueError("must be an http(s) URL such as https://ntfy.sh/my-topic")
    scheme, sep, rest = v.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    authority, _, tail = rest.partition("/")
    if not _URL_REST.fullmatch(tail) or not _URL_REST.fullmatch(authority):
        raise ValueError("holds a character a URL may not (space, quote, backtick, $, \\, braces, control)")
    if "@" in authority:
        raise ValueError("must not hold credentials before the host (user:password@); use the key's own settings")
    host, _ = _split_host_port(authority)
    _host_address(host.lower() if not host.startswith("[") else host)
    if plain_http_local_only and scheme == "http" and urlsplit(v).hostname not in LOCAL_HOSTS:
        raise ValueError(
            "plain http:// to another host sends API keys and passwords in clear; use https:// "
            "(http:// only to localhost)"
        )
    return v


class Link(Model):
    """The host's internet connection. With it, the host shapes the download clients' traffic (tc)."""

    interface: str = Field(description="The network interface that leads to the internet router, e.g. eth0 or enp3s0.")
    up: Rate = Field(description="The line's upload rate as the ISP delivers it, e.g. 40mbit.")
    down: Rate = Field(description="The line's download rate, e.g. 500mbit.")
    nic_speed: Rate = Field(
        1_000_000_000,
        description="The interface's own speed; LAN traffic (local streaming) may use all of it. Default 1gbit.",
    )

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,14}", v) or v in (".", ".."):
            raise ValueError("must be a network interface name such as eth0 (at most 15 letters, digits, '.-_:')")
        if v == DOWNLOADS_BRIDGE:
            raise ValueError(f"{DOWNLOADS_BRIDGE} is the download clients' bridge; name the internet-facing interface")
        return v

    @model_validator(mode="after")
    def _rates(self) -> Link:
        if self.up > self.nic_speed:
            raise ValueError(
                f"up ({format_rate(self.up)}) is above nic_speed ({format_rate(self.nic_speed)}); "
                "set nic_speed to the interface's speed"
            )
        return self


class Host(Model):
    """A machine that runs containers."""

    name: str = Field(description="Short host name, lower case (used in resource names and labels).")
    address: str = Field(description="IP address or DNS name Pulumi and users reach the host at.")
    cpus: int = Field(ge=1, le=1024, description="CPU threads the host has.")
    memory: Size = Field(description="Memory the host has, e.g. 32GiB.")
    gpu: Gpu = Field(Gpu.none, description="Transcoding hardware: none, intel or amd (/dev/dri), nvidia.")
    render_gid: int | None = Field(
        None,
        ge=1,
        description="GID of the host's `render` group (`getent group render`); required for intel/amd.",
    )
    storage: StorageKind = Field(StorageKind.ssd, description="Kind of disk that holds app configs and databases.")
    detect_gpu: bool = Field(
        False, description="Run a read-only GPU detection on the host and report what it finds next to `gpu`."
    )
    ssh_user: str = Field(
        "root", description="User Pulumi connects as over SSH (agent authentication) to manage the host."
    )
    docker_host: str | None = Field(
        None,
        description="Docker endpoint; default unix:///var/run/docker.sock for localhost, else ssh://<ssh_user>@<address>.",
    )
    link: Link | None = Field(
        None,
        description="The internet connection; set it to shape download traffic on this host so streams keep priority.",
    )
    roles: list[HostRole] = Field(
        default_factory=lambda: [HostRole.manager, HostRole.worker],
        description="On a cluster (more than one host): manager, worker and/or storage (holds a GlusterFS brick). "
        "Ignored on a single host.",
    )

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[HostRole]) -> list[HostRole]:
        if not v:
            raise ValueError("give at least one of manager, worker, storage")
        return sorted(set(v), key=list(HostRole).index)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be lower case letters, digits and '-', starting with a letter")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _host_address(v)

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, v: str) -> str:
        if not _USER.fullmatch(v):
            raise ValueError("must be a user name such as deploy (letters, digits, _ . -, not starting with -)")
        return v

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, sep, rest = v.partition("://")
        if sep and scheme == "unix" and rest.startswith("/") and _absolute_path(rest) == rest:
            return v
        if sep and scheme == "ssh":
            user, at, authority = rest.rpartition("@")
            if (not at or _USER.fullmatch(user)) and authority and "/" not in authority:
                host, _ = _split_host_port(authority)
                _host_address(host)
                return v
        if scheme == "tcp":
            raise ValueError(
                "a plain tcp:// Docker endpoint gives anyone who reaches the port root on the host; use "
                "ssh://user@host (the default for a remote host) or unix:///var/run/docker.sock"
            )
        raise ValueError("must be unix:///path/to/docker.sock or ssh://user@host[:port]")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: int) -> int:
        if v < 512 * 1024**2:
            raise ValueError("must be at least 512MiB")
        return v

    @model_validator(mode="after")
    def _render_group(self) -> Host:
        if self.gpu in (Gpu.intel, Gpu.amd) and self.render_gid is None:
            raise ValueError(
                f"render_gid is required when gpu is {self.gpu.value}: containers given /dev/dri need "
                "the host's render group; find it with `getent group render | cut -d: -f3`"
            )
        return self


class Paths(Model):
    """Where state and media live on the host."""

    data_root: DataPath = Field(
        "/srv/media/data",
        description="The one data tree (TRaSH layout): torrents/, usenet/, media/{movies,tv,music,books}. "
        "Download clients and *arr apps mount it at /data so imports are hardlinks.",
    )
    config_root: DataPath = Field(
        "/srv/media/config",
        description="App config directories (one per service). Node-local disk: they hold SQLite databases.",
    )
    cache_root: DataPath = Field(
        "/srv/media/cache",
        description="Fast (SSD) scratch space: Tdarr's transcode cache, Jellyfin's cache, and Jellyfin's "
        "transcodes when not on tmpfs.",
    )
    photos_root: DataPath = Field(
        "/srv/media/photos", description="Immich's upload library (originals, thumbnails, encoded video)."
    )
    artwork_cache_size: Size = Field(
        2 * GIB, description="Disk the nginx artwork cache in front of Jellyfin may use under cache_root."
    )
    transcode_tmpfs: Size | None = Field(
        4 * GIB,
        description="Size of the RAM disk for Jellyfin's live transcodes; null puts them under cache_root. "
        "tmpfs pages count against Jellyfin's memory limit.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Paths:
        roots = {
            "data_root": self.data_root,
            "config_root": self.config_root,
            "cache_root": self.cache_root,
            "photos_root": self.photos_root,
        }
        for a, pa in roots.items():
            for b, pb in roots.items():
                if a < b and (pa == pb or pa.startswith(pb + "/") or pb.startswith(pa + "/")):
                    raise ValueError(f"{a} ({pa}) and {b} ({pb}) must not overlap; give each its own directory")
        return self


class Identity(Model):
    """The one user that owns the data root; linuxserver.io images drop to it."""

    puid: int = Field(
        1000, ge=1, le=2**31 - 1, description="User id the apps run as (not 0: root owns nothing it should)."
    )
    pgid: int = Field(1000, ge=1, le=2**31 - 1, description="Group id the apps run as.")
    umask: str = Field("002", description="File mode mask for new files; 002 keeps the data tree group-writable.")
    tz: str = Field("Etc/UTC", description="IANA time zone, e.g. Europe/Berlin.")

    @field_validator("umask", mode="before")
    @classmethod
    def _umask(cls, v: Any) -> str:
        text = f"{v:03d}" if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(text, str) or not re.fullmatch(r"0?[0-7]{3}", text):
            raise ValueError("must be three octal digits such as 002 or 022")
        return text[-3:]

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v not in _time_zones():
            raise ValueError("not an IANA time zone; use a name such as Europe/Berlin or America/New_York")
        return v


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Resources(Model):
    """CPU and memory limits and reservations."""

    cpus: float = Field(gt=0, le=1024, description="CPU limit (cores, fractions allowed).")
    memory: Size = Field(description="Memory limit (hard; the container is OOM-killed above it).")
    cpu_reservation: float = Field(
        gt=0, le=1024, description="CPUs guaranteed (Swarm reservation; CPU shares on one host)."
    )
    memory_reservation: Size = Field(description="Memory guaranteed (soft limit on one host, reservation on Swarm).")

    @field_validator("memory", "memory_reservation")
    @classmethod
    def _min_memory(cls, v: int) -> int:
        if v < 6 * 1024**2:
            raise ValueError("must be at least 6MiB (Docker's minimum)")
        return v

    @model_validator(mode="after")
    def _reservations_within_limits(self) -> Resources:
        if self.cpu_reservation > self.cpus:
            raise ValueError(f"cpu_reservation {self.cpu_reservation} is above the cpus limit {self.cpus}; lower it")
        if self.memory_reservation > self.memory:
            raise ValueError(
                f"memory_reservation {format_size(self.memory_reservation)} is above the memory limit "
                f"{format_size(self.memory)}; lower it"
            )
        return self


class ResourcesOverride(Model):
    """Any subset of a tier's resources, for one service."""

    cpus: float | None = Field(None, gt=0, le=1024)
    memory: Size | None = None
    cpu_reservation: float | None = Field(None, gt=0, le=1024)
    memory_reservation: Size | None = None


class Tiers(Model):
    """Resource classes; every service belongs to one."""

    critical: Resources = Field(
        Resources(cpus=4, memory=8 * GIB, cpu_reservation=1, memory_reservation=2 * GIB),
        description="The media server: never starved, never swapped. "
        "Default: 4 CPUs and 8GiB, reserving 1 CPU and 2GiB.",
    )
    standard: Resources = Field(
        Resources(cpus=2, memory=2 * GIB, cpu_reservation=0.25, memory_reservation=512 * MIB),
        description="The *arr apps, download clients, Immich, databases. "
        "Default: 2 CPUs and 2GiB, reserving 0.25 and 512MiB.",
    )
    utility: Resources = Field(
        Resources(cpus=0.5, memory=512 * MIB, cpu_reservation=0.05, memory_reservation=64 * MIB),
        description="Exporters, the socket proxy, small helpers. "
        "Default: 0.5 CPU and 512MiB, reserving 0.05 and 64MiB.",
    )

    def get(self, tier: TierName) -> Resources:
        return getattr(self, tier.value)


# The whole catalog reserves 5.25 CPUs with the standard preset (1 critical x 1 + 14 standard x 0.25 + 15 utility
# x 0.05); a stack whose smallest host has fewer threads gets the small preset, whose reservations total 3.4
# (docs/architecture.md).
SMALL_HOST_CPUS = 6
SMALL_TIERS: dict[str, dict[str, float]] = {
    "critical": {"cpu_reservation": 1},
    "standard": {"cpu_reservation": 0.15},
    "utility": {"cpu_reservation": 0.02},
}


def default_tiers(cpus: int, memory: int) -> dict[str, dict[str, float]]:
    """The tier preset for the smallest host: the standard one from SMALL_HOST_CPUS threads up, else the small one;
    limits never above what that host has, reservations never above the limits."""
    tiers = {}
    for name, field in Tiers.model_fields.items():
        small = SMALL_TIERS[name] if cpus < SMALL_HOST_CPUS else {}
        preset: dict[str, float] = {**field.default.model_dump(), **small}
        preset["cpus"] = min(preset["cpus"], cpus)
        preset["memory"] = min(preset["memory"], memory)
        preset["cpu_reservation"] = min(preset["cpu_reservation"], preset["cpus"])
        preset["memory_reservation"] = min(preset["memory_reservation"], preset["memory"])
        tiers[name] = preset
    return tiers


class ExtraMount(Model):
    """A host directory bound into one service."""

    source: AbsPath = Field(description="Host path.")
    target: AbsPath = Field(description="Path inside the container.")
    read_only: bool = Field(True, description="Mount read-only (the default).")

    @field_validator("source")
    @classmethod
    def _no_docker_socket(cls, v: str) -> str:
        if v in ("/var/run/docker.sock", "/run/docker.sock") or v in ("/var/run", "/run"):
            raise ValueError("only the socket proxy may reach the Docker socket; talk to it instead")
        return v


# The identity linuxserver.io images drop to; only `identity` sets them (and the policy pack checks them).
IDENTITY_ENV = {"PUID": "puid", "PGID": "pgid", "UMASK": "umask", "TZ": "tz"}


class ServiceOverride(Model):
    """Switches and overrides for one catalog service."""

    enabled: bool | None = Field(None, description="Turn the service on or off (default: from `bundles`).")
    image_tag: str | None = Field(None, description="Pin a different version tag (never `latest`).")
    image_digest: str | None = Field(None, description="Pin the image by digest too: sha256:<64 hex>.")
    tier: TierName | None = Field(None, description="Move the service to another tier.")
    resources: ResourcesOverride | None = Field(None, description="Override single values of the tier's resources.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables (not secrets).")
    mounts: list[ExtraMount] = Field(default_factory=list, description="Extra host directories.")
    subdomain: str | None = Field(None, description="Host name under `domain` for its web UI.")
    host: str | None = Field(
        None,
        description="On a cluster: the host that holds this service's node-local state (its config directory), "
        "where Swarm pins it. Default: the first GPU host for GPU services, else the first manager.",
    )

    @field_validator("image_tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v == "latest" or not _TAG.fullmatch(v):
            raise ValueError("must be a version tag such as 10.10.7 (not `latest`: upgrades are reviewed pin changes)")
        return v

    @field_validator("image_digest")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is not None and not _DIGEST.fullmatch(v):
            raise ValueError("must be sha256: followed by 64 lower-case hex digits")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"{key!r} is not an environment variable name (letters, digits, _)")
            if key in IDENTITY_ENV:
                raise ValueError(
                    f"{key} is set by the stack from `identity`; set identity.{IDENTITY_ENV[key]} instead of env.{key}"
                )
            if "\x00" in v[key]:
                raise ValueError(f"env.{key} holds a NUL byte, which no environment can carry")
        return v

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.fullmatch(v):
            raise ValueError("must be one DNS label: lower case letters, digits and '-'")
        return v


class Tls(Model):
    """How Traefik gets certificates."""

    acme_email: str | None = Field(
        None, description="Let's Encrypt account e-mail; unset, Traefik serves its self-signed default certificate."
    )
    acme_staging: bool = Field(False, description="Use Let's Encrypt's staging CA (for trying things out).")

    @field_validator("acme_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return v if v is None else _email(v)


class Thresholds(Model):
    """When alerts fire. Percentages are of the resource's capacity."""

    host_cpu_percent: float = Field(80, gt=0, le=100, description="Host CPU busy above this for 15 minutes.")
    host_memory_percent: float = Field(85, gt=0, le=100, description="Host memory in use above this for 10 minutes.")
    host_disk_percent: float = Field(90, gt=0, le=100, description="A host filesystem fuller than this for 10 minutes.")
    container_memory_percent: float = Field(
        90, gt=0, le=100, description="A container's working set above this share of its memory limit for 10 minutes."
    )
    api_p95_ms: float = Field(200, gt=0, description="p95 latency of a routed service above this for 10 minutes.")
    restarts_per_15m: int = Field(3, ge=1, description="Container starts in 15 minutes that count as a restart loop.")
    certificate_days: int = Field(14, ge=1, description="Alert when a TLS certificate expires within this many days.")
    library_scan_seconds: float = Field(300, gt=0, description="A Jellyfin library scan that took longer than this.")
    transcode_queue: int = Field(10, ge=0, description="Files waiting in Tdarr's transcode queue for 30 minutes.")
    host_cpu_peak_percent: float = Field(
        70, gt=0, le=100, description="Host CPU busy above this for 5 minutes (a peak): a warning before saturation."
    )
    host_iowait_percent: float = Field(
        10, gt=0, le=100, description="Host CPU time waiting on I/O above this for 10 minutes."
    )
    probe_latency_ms: float = Field(
        50, gt=0, description="A blackbox probe of a service's health URL slower than this on average for 10 minutes."
    )


class Email(Model):
    """An SMTP receiver. The password is a Pulumi secret: `pulumi config set --secret`."""

    to: str = Field(description="Recipient address.")
    sender: str = Field(description="From address.")
    smarthost: str = Field(description="SMTP server as host:port, e.g. smtp.example.org:587.")
    username: str | None = Field(None, description="SMTP user, if the server needs one.")
    password: str | None = Field(
        None,
        description="SMTP password; set it as a secret: "
        "`pulumi config set --secret --path 'mediastack:alerting.email.password' ...`.",
    )

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, v: str) -> str:
        try:
            host, port = _split_host_port(v)
            _host_address(host)
        except ValueError:
            raise ValueError("must be host:port such as smtp.example.org:587") from None
        if not port:
            raise ValueError("must be host:port such as smtp.example.org:587")
        return v

    @field_validator("to", "sender")
    @classmethod
    def _addresses(cls, v: str) -> str:
        return _email(v)

    @field_validator("username", "password")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        return v if v is None else _text(v, "the SMTP server takes one line")


class Alerting(Model):
    """Where alerts go. With no receiver, alerts wait in Alertmanager's UI."""

    thresholds: Thresholds = Field(Thresholds(), description="When alerts fire.")
    webhook_urls: list[str] = Field(default_factory=list, description="Webhook receivers (any Alertmanager webhook).")
    ntfy_url: str | None = Field(
        None, description="An ntfy topic URL (e.g. https://ntfy.sh/my-media-alerts); alerts are posted to it."
    )
    email: Email | None = Field(None, description="An SMTP receiver for critical alerts.")

    @field_validator("webhook_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            try:
                _url(url)
            except ValueError as error:
                raise ValueError(f"{url!r} is not an http(s) URL: {error}") from None
        return v

    @field_validator("ntfy_url")
    @classmethod
    def _ntfy(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+/[A-Za-z0-9_-]{1,64}", v):
            raise ValueError("must be an ntfy topic URL such as https://ntfy.sh/my-media-alerts")
        return v if v is None else _url(v)


class Slo(Model):
    """What `mediastack verify` holds the running stack to (p95, milliseconds)."""

    health_p95_ms: float = Field(200, gt=0, description="Jellyfin's health endpoint.")
    api_p95_ms: float = Field(200, gt=0, description="An API call (Jellyfin's public system info).")
    search_p95_ms: float = Field(500, gt=0, description="A library search (needs jellyfin_api_key).")
    page_p95_ms: float = Field(1000, gt=0, description="The web UI's page.")
    max_error_ratio: float = Field(0.01, ge=0, le=1, description="Share of failed requests allowed per endpoint.")
    transcode_start_ms: float = Field(
        2000,
        gt=0,
        description="Time to the first transcoded HLS segment of a video (needs jellyfin_api_key), worst of the runs.",
    )


class VpnType(StrEnum):
    wireguard = "wireguard"
    openvpn = "openvpn"


class Vpn(Model):
    """A VPN (gluetun) for the download clients. Credentials are Pulumi secrets:
    `pulumi config set --secret --path 'mediastack:downloads.vpn.wireguard_private_key' ...`."""

    provider: str = Field(
        description="gluetun's VPN_SERVICE_PROVIDER: mullvad, protonvpn, airvpn, 'private internet access', custom..."
    )
    type: VpnType = Field(VpnType.wireguard, description="wireguard or openvpn.")
    wireguard_private_key: str | None = Field(None, description="WireGuard private key (secret).")
    wireguard_addresses: str | None = Field(None, description="WireGuard interface address(es), e.g. 10.64.1.2/32.")
    openvpn_user: str | None = Field(None, description="OpenVPN user name (secret).")
    openvpn_password: str | None = Field(None, description="OpenVPN password (secret).")
    server_countries: list[str] = Field(default_factory=list, description="Countries to pick servers in.")
    port_forwarding: bool = Field(
        False,
        description="Ask the provider for a forwarded port (ProtonVPN, PIA, ...) and set it as qBittorrent's "
        "listening port whenever it changes.",
    )
    endpoint_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The VPN servers' port; the host lets only this out of the downloads network. "
        "Default 51820 (wireguard) or 1194 (openvpn).",
    )
    endpoints: list[str] = Field(
        default_factory=list,
        description="The VPN servers' addresses or networks (e.g. 185.65.135.10 or 185.65.135.0/24); the host "
        "lets the VPN port out of the downloads network only to these. One address is also gluetun's "
        "OPENVPN_ENDPOINT_IP (the server it connects to). Required with provider custom; without it the "
        "port is open to any address.",
        max_length=64,
    )

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9 .-]{1,40}", v):
            raise ValueError("must be a gluetun provider name in lower case, such as mullvad or protonvpn")
        return v

    @field_validator("wireguard_addresses")
    @classmethod
    def _wg_addresses(cls, v: str | None) -> str | None:
        if v is None:
            return v
        for part in v.split(","):
            text = part.strip()
            try:
                if "/" not in text or not re.fullmatch(r"[0-9A-Fa-f.:/]+", text):
                    raise ValueError
                ipaddress.ip_interface(text)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not an interface address with its prefix; use e.g. 10.64.1.2/32 "
                    "(several separated by commas)"
                ) from None
        return v

    @field_validator("server_countries")
    @classmethod
    def _countries(cls, v: list[str]) -> list[str]:
        for country in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z .'-]{1,40}", country):
                raise ValueError(f"{country!r} is not a country name such as Netherlands (letters, spaces, . ' -)")
        return v

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        for endpoint in v:
            try:
                # ASCII digits, hex letters, dots, colons and one slash only: no zone, no space, no nft syntax.
                if not re.fullmatch(r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?", endpoint):
                    raise ValueError
                network = ipaddress.ip_network(endpoint, strict=True)
            except ValueError:
                raise ValueError(
                    f"{endpoint!r} is not a VPN server address or network; use e.g. 185.65.135.10 or "
                    "185.65.135.0/24 (host bits zero)"
                ) from None
            if network.prefixlen == 0:
                raise ValueError(f"{endpoint!r} is every address; list the VPN servers, or leave endpoints out")
        return v

    @field_validator("wireguard_private_key", "openvpn_user", "openvpn_password")
    @classmethod
    def _credential(cls, v: str | None) -> str | None:
        return v if v is None else _text(v, "gluetun reads it as one line")

    @model_validator(mode="after")
    def _credentials(self) -> Vpn:
        if self.type is VpnType.wireguard and not self.wireguard_private_key:
            raise ValueError(
                "wireguard needs wireguard_private_key; set it as a secret: pulumi config set --secret --path "
                "'mediastack:downloads.vpn.wireguard_private_key' <key>"
            )
        if self.type is VpnType.openvpn and not (self.openvpn_user and self.openvpn_password):
            raise ValueError(
                "openvpn needs openvpn_user and openvpn_password; set them as secrets with pulumi config set --secret"
            )
        if self.provider == "custom" and not self.endpoints:
            raise ValueError(
                "provider custom has no server list: set downloads.vpn.endpoints to your VPN server's address "
                "(e.g. [185.65.135.10])"
            )
        return self

    @property
    def endpoint_ip(self) -> str | None:
        """The one server address gluetun is told to connect to, when `endpoints` is exactly one address."""
        if len(self.endpoints) != 1:
            return None
        network = ipaddress.ip_network(self.endpoints[0])
        return str(network.network_address) if network.num_addresses == 1 else None

    @property
    def port(self) -> int:
        return self.endpoint_port or (51820 if self.type is VpnType.wireguard else 1194)


class Downloads(Model):
    """The download clients' share of the internet connection, their VPN, and their wiring."""

    max_down: Rate | None = Field(
        None,
        description="Cap on the download clients' incoming traffic. Default with a host `link`: 80% of link.down. "
        "Shaped on the host and set in the clients themselves.",
    )
    max_up: Rate | None = Field(
        None,
        description="Cap on the download clients' outgoing traffic (seeding). Default with a host `link`: "
        "50% of link.up, leaving the rest to remote streams.",
    )
    vpn: Vpn | None = Field(
        None, description="Route the download clients through a VPN (gluetun) with a kill switch; unset, no VPN."
    )


WIRED_APPS = ("sonarr", "radarr", "prowlarr", "bazarr", "qbittorrent", "sabnzbd", "jellyfin", "immich-server", "seerr")


class Wiring(Model):
    """Connecting the apps to each other at deploy time, through their APIs (docs/pipeline.md)."""

    enabled: bool = Field(
        True,
        description="Wire the pipeline on `pulumi up`: root folders, download clients and categories, Prowlarr's "
        "applications, Bazarr, and the apps' logins. Set false to configure the apps (and make their logins) by hand.",
    )
    urls: dict[str, str] = Field(
        default_factory=dict,
        description="Where the machine running Pulumi reaches an app, by name (sonarr, radarr, prowlarr, bazarr, "
        "qbittorrent, sabnzbd, jellyfin, immich-server); default https://<its web host> through Traefik.",
    )
    verify_tls: bool = Field(
        True,
        description="Check the apps' TLS certificates (the wiring sends API keys and passwords). Without "
        "tls.acme_email Traefik serves a self-signed certificate, which fails the check: set tls.acme_email, or set "
        "this false knowingly (whoever is on the path between Pulumi and the host can then read the keys).",
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: dict[str, str]) -> dict[str, str]:
        for app, url in v.items():
            if app not in WIRED_APPS:
                raise ValueError(f"{app!r} is not wired; the wired apps are {', '.join(WIRED_APPS)}")
            try:
                _url(url, plain_http_local_only=True)
            except ValueError as error:
                raise ValueError(
                    f"urls.{app} = {url!r} is not a URL such as https://192.168.1.10:8989 ({error})"
                ) from None
        return v


_S3 = re.compile(
    r"s3:(https?://)?[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?/[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9._+@/-]*)?"
)
_SFTP = re.compile(
    r"sftp:([A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*:[A-Za-z0-9._+@/~-]+"
    r"|sftp://([A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?/[A-Za-z0-9._+@/~-]+"
)


class SqliteCopy(StrEnum):
    online_backup = "online-backup"
    vacuum_into = "vacuum-into"


class Retention(Model):
    """How many snapshots `restic forget` keeps: the newest of each of the last N days, weeks, months, years."""

    daily: int = Field(7, ge=0, le=3650, description="Daily snapshots to keep.")
    weekly: int = Field(4, ge=0, le=520, description="Weekly snapshots to keep.")
    monthly: int = Field(6, ge=0, le=240, description="Monthly snapshots to keep.")
    yearly: int = Field(0, ge=0, le=100, description="Yearly snapshots to keep.")

    @model_validator(mode="after")
    def _something(self) -> Retention:
        if not (self.daily or self.weekly or self.monthly or self.yearly):
            raise ValueError("keeps nothing; keep at least one daily, weekly, monthly or yearly snapshot")
        return self


class Backups(Model):
    """Backups of every service's state with restic (docs/backups.md). Off until `repository` is set; the
    policy pack refuses a stack with state and no backups."""

    repository: str | None = Field(
        None,
        description="Where restic keeps the snapshots: a local path (/mnt/backup/mediastack), "
        "sftp:user@host:/path, or s3:https://host/bucket[/prefix] (S3-compatible).",
    )
    schedule: str = Field(
        "*-*-* 03:30:00", description="When backups run: a systemd OnCalendar expression in the host's time."
    )
    check_schedule: str = Field(
        "Sun *-*-* 05:00:00",
        description="When the repository is pruned and checked (`restic check`): OnCalendar expression.",
    )
    check_read_data_subset: str | None = Field(
        None,
        description="Also read back this share of the stored data at each check, e.g. 5% or 2G (restic "
        "--read-data-subset); unset, the check verifies the structure only.",
    )
    retention: Retention = Field(Retention(), description="Snapshots kept (restic forget).")
    sqlite_copy: SqliteCopy = Field(
        SqliteCopy.vacuum_into,
        description="How each SQLite database is copied before the snapshot, both consistent: vacuum-into (the "
        "default; VACUUM INTO: a compacted copy whose layout stays stable, so a day's inserts add megabytes to the "
        "repository instead of most of the database; measured 5x smaller incrementals, see docs/performance.md) "
        "or online-backup (SQLite's backup API; the copy keeps the live file's page layout).",
    )
    include_photos: bool = Field(
        False,
        description="Also back up Immich's library (paths.photos_root, without its thumbnails and encoded "
        "videos). Off by default like media: it is large and usually has a copy on the phones it came from.",
    )
    alert_grace_hours: float = Field(
        6,
        gt=0,
        le=168,
        description="BackupTooOld fires when the last success is older than the longest gap in `schedule` "
        "plus this (room for a slow run).",
    )
    password: str | None = Field(
        None,
        description="The repository password (secret); unset, the stack generates one. Set it to reach an "
        "existing repository from a new stack: `pulumi config set --secret --path "
        "'mediastack:backups.password' ...`.",
    )
    s3_access_key_id: str | None = Field(None, description="S3 access key id (secret), for an s3: repository.")
    s3_secret_access_key: str | None = Field(None, description="S3 secret access key (secret), for an s3: repository.")

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith("/"):
            return _data_root(_absolute_path(v))
        if v.startswith("sftp:") and _SFTP.fullmatch(v):
            return v
        if v.startswith("s3:") and _S3.fullmatch(v):
            return v
        raise ValueError(
            "must be a local path (/mnt/backup/mediastack), sftp:user@host:/path or s3:https://host/bucket"
        )

    @field_validator("schedule", "check_schedule")
    @classmethod
    def _calendar(cls, v: str) -> str:
        from mediastack.model.calendar import FORMS, parse

        # ASCII only (systemd reads no other digits) and one line: the value is written into a timer unit.
        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9*:.,/ -]{1,200}", v):
            raise ValueError(f"may hold only ASCII letters, digits, spaces and * : . , / -; use {FORMS}")
        parse(v)
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: str | None) -> str | None:
        # restic reads the first line of the password file: a line break would cut the password short.
        if v is not None and (not v or _CONTROL.search(v)):
            raise ValueError("must be one line without control characters (restic reads only the first line)")
        return v

    @field_validator("s3_access_key_id", "s3_secret_access_key")
    @classmethod
    def _s3_key(cls, v: str | None) -> str | None:
        return v if v is None else _text(v, "the S3 keys are one line each")

    @field_validator("check_read_data_subset")
    @classmethod
    def _subset(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(100|[1-9]?[0-9])(\.[0-9]+)?%|[0-9]+[KMGT]", v):
            raise ValueError("must be a percentage such as 5% or a size such as 2G")
        return v

    @model_validator(mode="after")
    def _s3_keys(self) -> Backups:
        s3 = bool(self.repository and self.repository.startswith("s3:"))
        if s3 and not (self.s3_access_key_id and self.s3_secret_access_key):
            raise ValueError(
                "an s3: repository needs s3_access_key_id and s3_secret_access_key; set them as secrets: "
                "pulumi config set --secret --path 'mediastack:backups.s3_secret_access_key' ..."
            )
        return self


class SharedStorageKind(StrEnum):
    glusterfs = "glusterfs"
    nfs = "nfs"
    cephfs = "cephfs"


class GlusterFs(Model):
    """A replicated GlusterFS volume across the hosts with the `storage` role (one brick each)."""

    volume: str = Field("mediastack", description="Gluster volume name.")
    brick_root: DataPath = Field(
        "/srv/gluster/bricks", description="Directory on each storage host's own disk that holds its brick."
    )
    tls: bool = Field(
        True,
        description="TLS for the volume's I/O and the management connections (client.ssl, server.ssl, "
        "/var/lib/glusterd/secure-access), with certificates the stack's own CA signs; only the cluster's "
        "nodes (auth.ssl-allow) may connect. Turning it on for a running volume needs every mount remounted.",
    )

    @field_validator("volume")
    @classmethod
    def _volume(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be lower case letters, digits and '-', starting with a letter")
        return v


class Nfs(Model):
    """An existing NFS export every host mounts."""

    server: str = Field(description="NFS server address.")
    export: AbsPath = Field(description="The exported path on the server, e.g. /export/media.")
    options: str = Field("nfsvers=4.2,hard,noatime", description="Mount options.")

    @field_validator("server")
    @classmethod
    def _server(cls, v: str) -> str:
        return _host_address(v)

    @field_validator("options")
    @classmethod
    def _options(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]+(=[A-Za-z0-9_.:/+-]+)?(,[a-z0-9_]+(=[A-Za-z0-9_.:/+-]+)?)*", v):
            raise ValueError("must be comma-separated mount options such as nfsvers=4.2,hard,noatime")
        return v


class CephFs(Model):
    """An existing CephFS every host mounts with the kernel client."""

    monitors: list[str] = Field(min_length=1, description="Ceph monitor addresses (host or host:port).")
    path: AbsPath = Field("/", description="Directory inside CephFS to mount.")
    user: str = Field("mediastack", description="CephX client name (without `client.`).")
    secret_file: AbsPath = Field(
        "/etc/ceph/mediastack.secret",
        description="The CephX key on each host, placed by the Ceph administrator (never in the stack config).",
    )

    @field_validator("monitors")
    @classmethod
    def _monitors(cls, v: list[str]) -> list[str]:
        for m in v:
            try:
                host, _ = _split_host_port(m if isinstance(m, str) else "")
                _host_address(host)
            except ValueError:
                raise ValueError(f"{m!r} is not host or host:port such as 10.0.0.1:6789") from None
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("must be a CephX client name such as mediastack")
        return v


class SharedStorage(Model):
    """On a cluster: the filesystem every host mounts for the data root and Immich's library. App config
    directories never go here: they hold SQLite databases, which lock up and corrupt on network filesystems."""

    kind: SharedStorageKind = Field(description="glusterfs (built by the stack), nfs or cephfs (existing).")
    mount_point: DataPath = Field(
        "/mnt/mediastack", description="Where every host mounts it; paths.data_root and photos_root go under it."
    )
    glusterfs: GlusterFs = Field(GlusterFs(), description="GlusterFS settings (kind glusterfs).")
    nfs: Nfs | None = Field(None, description="NFS settings (kind nfs).")
    cephfs: CephFs | None = Field(None, description="CephFS settings (kind cephfs).")

    @model_validator(mode="after")
    def _settings(self) -> SharedStorage:
        if self.kind is SharedStorageKind.nfs and self.nfs is None:
            raise ValueError("kind nfs needs an `nfs` section with server and export")
        if self.kind is SharedStorageKind.cephfs and self.cephfs is None:
            raise ValueError("kind cephfs needs a `cephfs` section with monitors")
        return self


# Where Docker puts networks the program creates without a subnet (moby libnetwork/ipamutils/utils.go, read
# for Docker 20.10 to 28): bridges take 172.17.0.0/16 to 172.31.0.0/16 first (then 192.168.0.0/16 in /20s, once
# those 15 are used); Swarm overlays take 10.0.0.0/8 in /24s. A source address in them is a container, or the
# bridge's gateway standing in for a client Docker's userland proxy forwarded (IPv6 clients of an IPv4 bridge).
DOCKER_BRIDGE_POOLS = ("172.17.0.0/16", "172.18.0.0/15", "172.20.0.0/14", "172.24.0.0/13")
DOCKER_OVERLAY_POOLS = ("10.0.0.0/8",)
LAN_RANGES_SINGLE_HOST = ["10.0.0.0/8", "172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]
LAN_RANGES_CLUSTER = ["172.16.0.0/16", "192.168.0.0/16", "fc00::/7"]  # 10.0.0.0/8 is the overlays' pool


# A TRaSH Guides id (quality profile, custom format, custom format group): 32 lower-case hex digits.
_TRASH_ID = re.compile(r"[0-9a-f]{32}")


def _trash_id(v: Any) -> str:
    if not isinstance(v, str) or not _TRASH_ID.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a TRaSH Guides trash_id (32 lower-case hex digits; `recyclarr list quality-profiles` "
            "and `recyclarr list custom-format-groups` show them)"
        )
    return v


TrashId = Annotated[
    str, BeforeValidator(_trash_id), Field(json_schema_extra={"examples": ["72dae194fc92bf828f32cde7744e51a1"]})
]


class CustomFormatGroup(Model):
    """A TRaSH custom format group to sync although the guide does not sync it by default."""

    trash_id: TrashId = Field(description="The group's trash_id.")
    select: list[TrashId] | None = Field(
        None, description="Only these custom formats of the group (their trash_ids); unset, the group's defaults."
    )


class CustomFormatGroups(Model):
    """Which TRaSH custom format groups are synced beside the guide profiles' own (Recyclarr's
    `custom_format_groups`)."""

    add: list[CustomFormatGroup] = Field(default_factory=list, description="Groups to sync that are off by default.")
    skip: list[TrashId] = Field(default_factory=list, description="Groups synced by default to leave out.")


_PROFILES_HELP = (
    "TRaSH Guides quality profiles to create and keep in sync, by trash_id (guide-backed: their qualities, custom "
    "formats and scores come from the guide)."
)


class RecyclarrApp(Model):
    """What Recyclarr keeps in sync in one app: TRaSH Guides quality profiles (by trash_id) and custom formats."""

    enabled: bool = Field(True, description="Sync this app (while it is enabled in the stack).")
    quality_profiles: list[TrashId] = Field(
        min_length=1,
        description=_PROFILES_HELP,
    )
    reset_unmatched_scores: bool = Field(
        True, description="Set the scores of custom formats the guide profile does not name to 0."
    )
    quality_definition: bool = Field(True, description="Sync the guide's quality sizes (file size limits).")
    custom_format_groups: CustomFormatGroups = Field(
        CustomFormatGroups(), description="Custom format groups beside the profiles' defaults."
    )
    delete_old_custom_formats: bool = Field(
        False, description="Delete custom formats Recyclarr made that are no longer in this config or the guide."
    )

    @field_validator("quality_profiles")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} is listed more than once (Recyclarr refuses a repeated trash_id)")
        return v


# The defaults: what recyclarr/config-templates (branch v8, the one Recyclarr 8 fetches) syncs uncommented in its
# general templates. Keys left out of the stack config keep these; a key given replaces its default whole.


class SonarrSync(RecyclarrApp):
    """What Recyclarr syncs in Sonarr; default: config-templates sonarr/templates/web-1080p.yml."""

    quality_profiles: list[TrashId] = Field(
        ["72dae194fc92bf828f32cde7744e51a1"],  # WEB-1080p
        min_length=1,
        description=_PROFILES_HELP,
    )
    custom_format_groups: CustomFormatGroups = Field(
        CustomFormatGroups(
            add=[
                # [Optional] Golden Rule HD: x265 (HD)
                CustomFormatGroup(
                    trash_id="158188097a58d7687dee647e04af0da3", select=["47435ece6b99a0b477caf360e79ba0bb"]
                ),
                # [Streaming Services] HD/UHD boost
                CustomFormatGroup(
                    trash_id="85fae4a2294965b75710ef2989c850eb",
                    select=["218e93e5702f44a68ad9e3c6ba87d2f0", "43b3cf48cb385cd3eac608ee6bca7f09"],
                ),
                # [Unwanted] Unwanted Formats
                CustomFormatGroup(
                    trash_id="59c3af66780d08332fdc64e68297098f",
                    select=[
                        "15a05bc7c1a36e2b57fd628f8977e2fc",
                        "32b367365729d530ca1c124a0b180c64",
                        "85c61753df5da1fb2aab6f2a47426b09",
                        "6f808933a71bd9666531610cb8c059cc",
                        "fbcb31d8dabd2a319072b84fc0b7249c",
                        "9c11cd3f07101cdba90a2d81cf0e56b4",
                        "e2315f990da2e2cbfc9fa5b7a6fcfe48",
                        "23297a736ca77c0fc8e70f8edd7ee56c",
                    ],
                ),
            ]
        ),
        description="Custom format groups beside the profiles' defaults (default: the template's add list, "
        "docs/pipeline.md).",
    )


class RadarrSync(RecyclarrApp):
    """What Recyclarr syncs in Radarr; default: config-templates radarr/templates/hd-bluray-web.yml."""

    quality_profiles: list[TrashId] = Field(
        ["d1d67249d3890e49bc12e275d989a7e9"],  # HD Bluray + WEB
        min_length=1,
        description=_PROFILES_HELP,
    )
    custom_format_groups: CustomFormatGroups = Field(
        CustomFormatGroups(
            add=[
                # [Optional] Golden Rule HD: x265 (HD)
                CustomFormatGroup(
                    trash_id="f8bf8eab4617f12dfdbd16303d8da245", select=["dc98083864ea246d05a42df0d05f81cc"]
                ),
                # [Unwanted] Unwanted Formats
                CustomFormatGroup(
                    trash_id="a3ac6af01d78e4f21fcb75f601ac96df",
                    select=[
                        "b8cd450cbfa689c0259a01d9e29ba3d6",
                        "cae4ca30163749b891686f95532519bd",
                        "b6832f586342ef70d9c128d40c07b872",
                        "cc444569854e9de0b084ab2b8b1532b2",
                        "ed38b889b31be83fda192888e2286d83",
                        "0a3f082873eb454bde444150b70253cc",
                        "e6886871085226c3da1830830146846c",
                        "90a6f9a284dff5103f6346090e6280c8",
                        "e204b80c87be9497a8a6eaff48f72905",
                        "712d74cd88bceb883ee32f773656b1f5",
                        "bfd8eb01832d646a0a89c4deb46f8564",
                    ],
                ),
            ]
        ),
        description="Custom format groups beside the profiles' defaults (default: the template's add list, "
        "docs/pipeline.md).",
    )


class Recyclarr(Model):
    """Recyclarr (bundle companions): TRaSH Guides quality profiles and custom formats kept in sync in Sonarr and
    Radarr, on a schedule (docs/pipeline.md). Default: what recyclarr/config-templates' web-1080p (Sonarr) and
    hd-bluray-web (Radarr) templates sync."""

    schedule: str = Field(
        "*-*-* 04:30:00",
        description="When it syncs, in the stack's time zone: the same calendar forms as backups.schedule, on whole "
        "minutes (the image's own cron runs it).",
    )
    sonarr: SonarrSync = Field(SonarrSync(), description="What it syncs in Sonarr.")
    radarr: RadarrSync = Field(RadarrSync(), description="What it syncs in Radarr.")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from mediastack.model.calendar import FORMS, cron_expression

        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9*:.,/ -]{1,200}", v):
            raise ValueError(f"may hold only ASCII letters, digits, spaces and * : . , / -; use {FORMS}")
        cron_expression(v)
        return v

    @model_validator(mode="after")
    def _syncs_something(self) -> Recyclarr:
        if not (self.sonarr.enabled or self.radarr.enabled):
            raise ValueError(
                "sonarr.enabled and radarr.enabled are both false, so Recyclarr would sync nothing; turn Recyclarr "
                "off instead (services.recyclarr.enabled: false, or leave `companions` out of bundles)"
            )
        return self

    @property
    def cron(self) -> str:
        """The schedule as the image's cron reads it (its CRON_SCHEDULE)."""
        from mediastack.model.calendar import cron_expression

        return cron_expression(self.schedule)


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except (ValueError, TypeError):
        raise ValueError(f"{cidr!r} is not a network such as 192.168.0.0/16") from None


class Exposure(Model):
    """Which web UIs the internet may reach; every other UI answers only to `lan_ranges` (docs/security.md)."""

    public: list[str] = Field(
        ["jellyfin", "immich-server", "seerr"],
        description="Catalog services whose web UI is reachable from anywhere. Each must have a login of its own "
        "(docs/catalog.md); every other UI is LAN-only. [] keeps everything on the LAN. A service that is off is "
        "left out.",
    )
    docker_ranges: list[str] | None = Field(
        None,
        description="Where Docker allocates the stack's networks, which `lan_ranges` must not overlap (a container "
        "would pass as a LAN client). Default: Docker's own pools, 172.17.0.0/16-172.31.0.0/16, and 10.0.0.0/8 on "
        "a cluster; set it to the `default-address-pools` (and `swarm init --default-addr-pool`) you configured.",
    )
    allow_any_source: bool = Field(
        False,
        description="Opt in to `lan_ranges` that overlap `docker_ranges`: LAN-only UIs then answer to every "
        "container. A range that covers every address (0.0.0.0/0, ::/0) is refused even so: some LAN-only UIs "
        "have no login of their own.",
    )

    @field_validator("public")
    @classmethod
    def _public(cls, v: list[str]) -> list[str]:
        for name in v:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"{name!r} is not a catalog service name such as jellyfin")
        return list(dict.fromkeys(v))

    @field_validator("docker_ranges")
    @classmethod
    def _docker_ranges(cls, v: list[str] | None) -> list[str] | None:
        for cidr in v or ():
            _network(cidr)
        return v


# Reservations fit each host with this share to spare (the policy pack's host-capacity `headroom` default).
CAPACITY_HEADROOM = 0.1

# Below the line rate, so the queue forms on the host (where streams get priority), not in the ISP's modem.
LINE_SHARE_MAX = 0.95


class StackConfig(Model):
    """Everything under `mediastack:` in Pulumi.<stack>.yaml."""

    domain: str = Field(description="Domain under which every web UI gets a host name, e.g. media.example.org.")
    hosts: list[Host] = Field(min_length=1, description="The machines of this stack (one for a single-host stack).")
    paths: Paths = Field(Paths(), description="Where state and media live.")
    identity: Identity = Field(Identity(), description="PUID, PGID, UMASK, TZ.")
    tiers: Tiers = Field(
        Tiers(),
        description="Resource tiers. A tier left out follows the smallest host: the defaults below from 6 CPU "
        "threads, else the small preset (cpu_reservation 1, 0.15 and 0.02); limits no higher than that host has.",
    )
    bundles: list[str] | None = Field(
        None, description="Catalog bundles to enable (default: all). Core (Traefik, socket proxy) is always on."
    )
    services: dict[str, ServiceOverride] = Field(
        default_factory=dict, description="Per-service overrides, by catalog name."
    )
    tls: Tls = Field(Tls(), description="Certificates.")
    postgres_settings: dict[str, str] = Field(
        default_factory=dict,
        description="PostgreSQL settings for Immich's database that win over the computed ones, e.g. {work_mem: 64MB}.",
    )
    jellyfin_api_key: str | None = Field(
        None,
        description="A Jellyfin API key (Dashboard, API Keys) for the media exporter; set it as a secret: "
        "`pulumi config set --secret mediastack:jellyfin_api_key ...`.",
    )
    downloads: Downloads = Field(Downloads(), description="Bandwidth limits for the download clients.")
    wiring: Wiring = Field(Wiring(), description="Connecting the *arr apps and download clients at deploy time.")
    storage: SharedStorage | None = Field(
        None, description="On a cluster (more than one host): the shared filesystem for the data root. Required there."
    )
    alerting: Alerting = Field(Alerting(), description="Alert thresholds and receivers.")
    slo: Slo = Field(Slo(), description="Targets `mediastack verify` checks the running stack against.")
    backups: Backups = Field(Backups(), description="Backups of every service's state (docs/backups.md).")
    reserve_for_host: Size = Field(
        GIB, description="Memory kept free for the host OS; reservations must fit in what is left."
    )
    exposure: Exposure = Field(Exposure(), description="Which web UIs the internet may reach.")
    recyclarr: Recyclarr = Field(
        Recyclarr(), description="What Recyclarr syncs into Sonarr and Radarr, and when (bundle companions)."
    )
    lan_ranges: list[str] = Field(
        LAN_RANGES_SINGLE_HOST,
        description="Source ranges allowed to reach the LAN-only UIs (every UI not in exposure.public). The default "
        "leaves out Docker's own pools (see exposure.docker_ranges); on a cluster it is "
        f"{LAN_RANGES_CLUSTER} (10.0.0.0/8 holds Swarm's overlay networks).",
    )

    @model_validator(mode="before")
    @classmethod
    def _tiers_for_host(cls, data: Any) -> Any:
        """Tiers the user left out come from the size of the smallest host (the only one on a single host)."""
        if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or not data["hosts"]:
            return data
        sizes = []
        for host in data["hosts"]:
            if isinstance(host, Host):
                sizes.append((host.cpus, host.memory))
                continue
            try:
                sizes.append((int(host["cpus"]), parse_size(host["memory"])))
            except (KeyError, TypeError, ValueError):
                return data  # the host's own validation names the problem
        cpus, memory = min(c for c, _ in sizes), min(m for _, m in sizes)
        if cpus < 1 or memory < 1:
            return data
        given = data.get("tiers")
        if given is not None and not isinstance(given, dict):
            return data
        given = dict(given or {})
        for name, preset in default_tiers(cpus, memory).items():
            given.setdefault(name, preset)
        return {**data, "tiers": given}

    @field_validator("postgres_settings")
    @classmethod
    def _pg_settings(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", key):
                raise ValueError(f"{key!r} is not a PostgreSQL setting name (lower case, digits, _ and .)")
            if not isinstance(v[key], str) or _CONTROL.search(v[key]):
                raise ValueError(f"{key} = {v[key]!r}: a setting is one line without control characters")
        return v

    @field_validator("jellyfin_api_key")
    @classmethod
    def _jellyfin_key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", v):
            raise ValueError("must be a Jellyfin API key (letters and digits, from Dashboard, API Keys)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _cluster_lan_ranges(cls, data: Any) -> Any:
        # A cluster's overlays live in 10.0.0.0/8, so its default LAN ranges leave that out.
        if isinstance(data, dict) and "lan_ranges" not in data and len(data.get("hosts") or ()) > 1:
            return {**data, "lan_ranges": LAN_RANGES_CLUSTER}
        return data

    @field_validator("lan_ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for cidr in v:
            _network(cidr)
        return v

    @property
    def docker_ranges(self) -> list[str]:
        """The ranges the stack's Docker networks are allocated from."""
        if self.exposure.docker_ranges is not None:
            return self.exposure.docker_ranges
        return [*DOCKER_BRIDGE_POOLS, *(DOCKER_OVERLAY_POOLS if self.cluster else ())]

    def lan_range_problems(self) -> list[tuple[int, str, str]]:
        """(index, range, why) for each LAN range that lets in everyone or the stack's own containers."""
        found = []
        docker = [_network(c) for c in self.docker_ranges]
        for i, cidr in enumerate(self.lan_ranges):
            net = _network(cidr)
            # Never opted in: the LAN-only UIs include some without a login of their own (Traefik's dashboard,
            # Prometheus), which the policy pack never lets the internet reach (public-route-needs-login).
            if net.prefixlen == 0:
                found.append(
                    (
                        i,
                        cidr,
                        "lets every address on the internet reach the LAN-only UIs, some of which have no login of "
                        "their own; list your LAN's ranges (a UI with a login goes in mediastack:exposure.public)",
                    )
                )
                continue
            if self.exposure.allow_any_source:
                continue
            hit = next((d for d in docker if d.version == net.version and d.overlaps(net)), None)
            if hit is not None:
                found.append(
                    (
                        i,
                        cidr,
                        f"overlaps {hit}, where Docker allocates the stack's networks, so any container would pass as "
                        "a LAN client; narrow it to your LAN (e.g. 192.168.1.0/24), set mediastack:exposure."
                        "docker_ranges to the pools your Docker daemon uses, or set exposure.allow_any_source: true",
                    )
                )
        return found

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not _HOSTNAME.fullmatch(v) or "." not in v:
            raise ValueError("must be a DNS name such as media.example.org")
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[Host]) -> list[Host]:
        names = [h.name for h in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"host names must be unique; {', '.join(dupes)} appears more than once")
        return v

    @property
    def host(self) -> Host:
        """The single host; on a cluster, the first host (the manager that inits the swarm)."""
        return self.hosts[0]

    @property
    def cluster(self) -> bool:
        """More than one host: services render to Swarm services over shared storage."""
        return len(self.hosts) > 1

    def download_caps(self) -> tuple[int | None, int | None]:
        """(down, up) caps in bits/s for the download clients; None where nothing limits that direction."""
        link = self.host.link
        down = self.downloads.max_down or (link.down * 8 // 10 if link else None)
        up = self.downloads.max_up or (link.up // 2 if link else None)
        return down, up
