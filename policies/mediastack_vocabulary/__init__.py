"""The words the program and the policy pack share: roles, state kinds, bundles, label keys and markers.

Defined once here and imported by both. It lives beside the pack because the pack is started from
policies/ with its own virtualenv (policies/requirements.txt) and sees only that directory; the program
reaches it through its editable install (pyproject.toml maps the package here). It imports nothing, so
neither side pulls the other's dependencies in with it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a workload is to the stack; policies pick the workloads they judge by it."""

    app = "app"
    arr = "arr"  # Sonarr, Radarr, Prowlarr: import from the download clients into the media tree
    download_client = "download_client"
    media_server = "media_server"
    subtitles = "subtitles"
    database = "database"
    monitoring = "monitoring"
    companions = "companions"  # requests, quality profiles, a start page, download helpers
    exporter = "exporter"
    proxy = "proxy"
    vpn = "vpn"


ARR_ROLES = (Role.arr,)
DOWNLOAD_ROLES = (Role.download_client,)


class StateKind(StrEnum):
    """What a backup must treat with care in a service's state directory."""

    sqlite = "sqlite"  # copied with SQLite's online backup, never as a file
    postgres = "postgres"  # dumped
    redis = "redis"  # saved
    files = "files"  # plain files


class Bundle(StrEnum):
    """Groups of services a stack turns on together (`mediastack:bundles`)."""

    core = "core"
    media = "media"
    arr = "arr"
    downloads = "downloads"
    photos = "photos"
    transcoding = "transcoding"
    cache = "cache"
    monitoring = "monitoring"
    companions = "companions"  # requests, quality profiles, a start page, download helpers


class NetworkRole(StrEnum):
    frontend = "frontend"  # Traefik and the web UIs it routes to
    backend = "backend"  # apps that talk to each other, with egress for metadata and indexers
    database = "database"  # internal: databases and their clients
    monitoring = "monitoring"  # internal: Prometheus, its targets, Grafana, Alertmanager
    socket = "socket"  # internal: the socket proxy and its few readers
    downloads = "downloads"  # the download clients' way out: its bridge is where the host shapes their traffic


INTERNAL_NETWORKS = frozenset({NetworkRole.database, NetworkRole.monitoring, NetworkRole.socket})


class Label:
    """Label keys the program puts on workloads, networks, configs and nodes; the pack reads only these."""

    service = "mediastack.service"
    bundle = "mediastack.bundle"
    tier = "mediastack.tier"
    role = "mediastack.role"
    image = "mediastack.image"
    host = "mediastack.host"
    host_cpus = "mediastack.host-cpus"
    host_memory = "mediastack.host-memory"
    host_reserve = "mediastack.host-reserve"
    exposure = "mediastack.exposure"
    login = "mediastack.login"
    fronts = "mediastack.fronts"
    state = "mediastack.state"
    watches = "mediastack.watches"
    identity = "mediastack.identity"
    writes_data = "mediastack.writes-data"
    web_port = "mediastack.web-port"
    bandwidth_down = "mediastack.bandwidth-down"
    bandwidth_up = "mediastack.bandwidth-up"
    files = "mediastack.files"
    secret_files = "mediastack.secret-files"  # a keyed digest of the secrets a container reads from files
    file = "mediastack.file"
    network = "mediastack.network"
    stack = "mediastack.stack"
    placement = "mediastack.placement"
    shared_root = "mediastack.shared-root"
    state_paths = "mediastack.state-paths"
    replica_of = "mediastack.replica-of"
    gpu = "mediastack.gpu"
    disk = "mediastack.disk"
    roles = "mediastack.roles"


# Every workload the program deploys carries these; the pack treats one without them as unknown.
WORKLOAD_LABELS = (Label.service, Label.role, Label.tier)

# The here-document word the host step writes generated files with; the pack reads the files back by it.
HOST_FILE_MARKER = "MEDIASTACK_FILE"
# What the backup command says it covers, on its trigger: `mediastack.backup.covers=<service>:<kind>,...`.
BACKUP_COVERS_MARKER = "mediastack.backup.covers="
