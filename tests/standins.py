"""Stand-in images for a plan: the real images' names and tags, built locally from busybox-static.

Derived from the plan itself (so they follow whatever the program runs after other changes), each stand-in
keeps the facts a Docker engine acts on:
- the name:tag the program references, so the image resolves locally with no pull;
- the health-check binary the container's health test calls (curl, wget, traefik, pg_isready, ...), on PATH,
  answering from the app's own state: an HTTP probe of the URL in the test, or whether the app runs;
- the app: busybox httpd serving the health URL's path on its port, started by the entrypoint;
- the entrypoint behaviour that matters for ownership: linuxserver-style images (PUID/PGID in the
  environment) start as root, create and chown /config to PUID:PGID, then drop to PUID; the others run as
  the container's user. Either way the app writes a file into every writable bind mount first and the
  container exits (and restarts) when it cannot: a directory the image's user cannot write shows as restarts.
What they do not keep (the real program's own code, its config parsing) docs/verification.md names.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from pathlib import Path

from engine_apply import CONTAINER, SERVICE, container_image

import dockerd
from mediastack_cli.offline import PlanResult

URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)?")
DEFAULT_PORT = 8080

READ_SECRET_FILES = r"""
# Secrets from files (mediastack/plan/secret_files.py), read where and as whom the real image reads them (image facts):
# linuxserver's s6 init-envfile, gluetun and every entrypoint as the starting user; PostgreSQL's file_env again as
# postgres after the drop (STANDIN_DROP_TO). A file that user cannot read stops the start, as in the real image.
read_secret_files() {
  for variable in $(env | grep -E '^(FILE__[A-Za-z0-9_]+|[A-Za-z0-9_]+(_FILE|__FILE|_SECRETFILE))=' | cut -d= -f1); do
    eval "file=\${$variable}"
    if ! cat "$file" >/dev/null || ! [ -s "$file" ]; then
      echo "stand-in: $(id -u) cannot read $variable=$file" >&2
      exit 74
    fi
    if [ -n "${1:-}" ] && ! $1 cat "$file" >/dev/null; then
      echo "stand-in: ${STANDIN_DROP_TO:-} cannot read $variable=$file" >&2
      exit 74
    fi
  done
}
""".removeprefix("\n")

ENTRYPOINT = (
    r"""#!/bin/sh
# Stand-in entrypoint: ownership as the real image does it, then the app (httpd) as the image's user.
set -u
"""
    + READ_SECRET_FILES
    + r"""# The real images' PID 1 ends on SIGTERM (s6-overlay's /init for linuxserver images: `docker stop` stops them
# within the grace period); a shell as PID 1 would ignore it, and a health check's `kill 1` with it.
trap 'exit 143' TERM
if [ "$(id -u)" = 0 ] && [ -n "${PUID:-}" ]; then
  mkdir -p /config && chown "$PUID:${PGID:-$PUID}" /config || exit 71
  run="/usr/bin/setpriv --reuid=$PUID --regid=${PGID:-$PUID} --clear-groups"
elif [ "$(id -u)" = 0 ] && [ -n "${STANDIN_DROP_TO:-}" ]; then
  # An image whose entrypoint starts as root, hands what it writes to its user and drops to it (valkey,
  # postgres: image facts): the chown needs CHOWN, as in the real image.
  # What the engine mounted into such a directory (a Swarm config: a read-only file) is left alone: the real
  # entrypoints chown their own data directories, never a file mounted into them.
  mounted=$(cut -d' ' -f2 /proc/self/mounts)
  for dir in $STANDIN_CHOWN; do
    [ -d "$dir" ] || continue
    find "$dir" ! -user "${STANDIN_DROP_TO%%:*}" | while IFS= read -r path; do
      if [ "$path" != "$dir" ] && printf '%s\n' "$mounted" | grep -qxF "$path"; then
        continue
      fi
      chown "$STANDIN_DROP_TO" "$path" || exit 71
    done || exit 71
  done
  run="/usr/bin/setpriv --reuid=${STANDIN_DROP_TO%%:*} --regid=${STANDIN_DROP_TO##*:} --clear-groups"
else
  run=""
fi
if [ -n "${STANDIN_DROP_TO:-}" ]; then
  read_secret_files "$run"
else
  read_secret_files ""
fi
for dir in $STANDIN_WRITABLE; do
  [ -d "$dir" ] || continue
  if ! $run sh -c "echo ok > '$dir/.standin-write'"; then
    echo "stand-in: $(id -u):$(id -g) -> ${PUID:-self} cannot write $dir" >&2
    exit 73
  fi
done
if [ -n "${STANDIN_PROGRAM:-}" ]; then
  # The real program from Debian at the image's own path, the container's command as its arguments.
  $run "$STANDIN_PROGRAM" "$@" &
else
  $run httpd -f -p "$STANDIN_PORT" -h /standin/www &
fi
if [ -n "${STANDIN_METRICS_PORT:-}" ]; then
  # A minimal /metrics where the app's own exporter cannot run here, on the port Prometheus scrapes.
  $run httpd -f -p "$STANDIN_METRICS_PORT" -h /standin/metrics &
fi
if [ -n "${STANDIN_PROCESS:-}" ]; then
  # The process name a health check looks for in /proc/*/comm (a script's name is its comm); it lives while
  # the app does, so stopping the app fails the check.
  $run "/standin/$STANDIN_PROCESS" &
fi
wait
# The app stopped: the container stays up so its health check can report it.
while :; do sleep 3600 & wait $!; done
"""
)

PROBE = r"""#!/bin/sh
# Stand-in health-check binary: probes the app like the real one (exit 0 only when it answers).
url="$STANDIN_URL"
# The URL the check names, when it names one (a check may probe more than one endpoint: a download client's
# asks the VPN container's control server first).
for arg in "$@"; do
  case "$arg" in http://*|https://*) url="$arg" ;; esac
done
if [ -z "$url" ]; then
  pidof "${STANDIN_APP:-httpd}" >/dev/null
  exit $?
fi
timeout -s KILL 8 busybox wget -q -O /dev/null "$url"
"""


def _probe_url(tests: list[str]) -> tuple[int, str] | None:
    for word in tests:
        match = URL.search(word)
        if match:
            return int(match.group(1)), match.group(2) or "/"
    return None


def _app_port(inputs: dict) -> tuple[int, str, str]:
    """The port the app listens on, the path the health check asks for, and the probe URL ("" = process)."""
    tests = vpn_client_app_tests(list((inputs.get("healthcheck") or {}).get("tests", [])))
    found = _probe_url(tests)
    if found:
        port, path = found
        return port, path, f"http://127.0.0.1:{port}{path}"
    if len(tests) > 1 and tests[1] == "traefik":  # `traefik healthcheck --ping` asks the ping entrypoint
        addresses = [t.split("=:", 1)[1] for t in tests if t.startswith("--entrypoints.") and "=:" in t]
        port = int(addresses[-1]) if addresses else DEFAULT_PORT
        return port, "/ping", f"http://127.0.0.1:{port}/ping"
    return DEFAULT_PORT, "/", ""


def _health_binaries(tests: list[str]) -> list[str]:
    if not tests or tests[0] == "NONE":
        return []
    if tests[0] == "CMD-SHELL":
        return [w for w in re.findall(r"[A-Za-z_][\w.-]*", tests[1])[:1]]
    return [tests[1]] if len(tests) > 1 else []


def container_facts(inputs: dict) -> dict:
    """A Swarm service's container spec in a container's input names (what `build` reads)."""
    if "taskSpec" not in inputs:
        return inputs
    spec = inputs["taskSpec"]["containerSpec"]
    return {"name": inputs["name"], "healthcheck": spec.get("healthcheck"), "mounts": spec.get("mounts", [])}


def _image_facts(name: str):
    """The catalog's facts about the image a service runs (mediastack/catalog/image_facts.py), for a catalog
    service."""
    from mediastack.catalog.services import CATALOG

    service = CATALOG.get(name)
    return service.facts if service is not None else None


def build_all(engine: dockerd.Engine, plan: PlanResult) -> dict[str, str]:
    """Builds one stand-in per image the plan's containers run (skipping those present); image -> service."""
    built: dict[str, str] = {}
    for resource in plan.resources:
        if resource.type not in (CONTAINER, SERVICE):
            continue
        reference = container_image(plan, resource)
        if reference in built:
            continue
        built[reference] = resource.inputs["name"]
        if any(reference in (image.tags or []) for image in engine.client.images.list()):
            continue
        builder = SPECIAL_BUILDERS.get(resource.inputs["name"], build)
        builder(engine, reference, container_facts(resource.inputs))
    return built


def build(engine: dockerd.Engine, reference: str, inputs: dict) -> None:
    port, path, url = _app_port(inputs)
    tests = vpn_client_app_tests(list((inputs.get("healthcheck") or {}).get("tests", [])))
    writable = sorted(
        m["target"] for m in inputs.get("mounts", []) if m["type"] == "bind" and not m.get("readOnly", False)
    )
    with tempfile.TemporaryDirectory(prefix="standin") as scratch:
        root = dockerd.busybox_rootfs(
            Path(scratch), (*dockerd.APPLETS, "pidof", "chown", "echo", "find", "cut", "grep", "env")
        )
        dockerd.copy_program(root, "/usr/bin/setpriv")  # util-linux's: busybox's cannot change the user
        (root / "bin" / "busybox").chmod(0o755)
        standin = root / "standin"
        www = standin / "www"
        page = www / (path.split("?")[0].lstrip("/") or "index.html")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("ok\n")
        (standin / "entrypoint").write_text(ENTRYPOINT)
        (standin / "entrypoint").chmod(0o755)
        for directory in ("usr/bin", "usr/local/bin"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        for binary in _health_binaries(tests):
            if tests[0] == "CMD" and binary == "bash":
                # A check written in bash (Recyclarr's reads its last sync's log): Debian's bash runs the real script.
                dockerd.copy_program(root, "/bin/bash")
                continue
            shim = root / "usr" / "local" / "bin" / Path(binary).name
            shim.write_text(PROBE)
            shim.chmod(0o755)
        process = re.search(r"([A-Za-z_][\w.-]*) /proc/\[0-9\]\*/comm", " ".join(tests))
        if process:
            named = standin / process.group(1)
            named.write_text("#!/bin/sh\nsleep 2\nwhile pidof httpd >/dev/null; do sleep 2; done\n")
            named.chmod(0o755)
        extra = (*real_program(root, inputs), *metrics_endpoint(root, inputs, port), *standin_app(root, inputs))
        (root / "config").mkdir(exist_ok=True)
        (root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nabc:x:911:911::/config:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        )
        facts = _image_facts(inputs.get("name", ""))
        user = []
        if facts is not None and facts.starts_as_root and facts.user.split(":")[0] not in ("0", "root"):
            user = [f"ENV STANDIN_DROP_TO={facts.user}", f"ENV STANDIN_CHOWN={shlex.quote(' '.join(facts.writes))}"]
        elif facts is not None and not facts.starts_as_root and facts.user.split(":")[0].isdigit():
            user = [f"USER {facts.user}"]  # the image's own USER (the container's `user` overrides it)
        changes = (
            *user,
            'ENTRYPOINT ["/standin/entrypoint"]',
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            f"ENV STANDIN_PORT={port}",
            f"ENV STANDIN_URL={url}",
            f"ENV STANDIN_WRITABLE={shlex.quote(' '.join(writable))}" if writable else "ENV STANDIN_WRITABLE=",
            f"LABEL org.mediastack.standin={reference}",
            f"ENV STANDIN_PROCESS={process.group(1)}" if process else "ENV STANDIN_PROCESS=",
            *extra,
        )
        dockerd.import_rootfs(engine, root, reference, changes)


# -- the VPN stack: gluetun and the download clients in its namespace --------------------------------------

VPN_ALIVE = re.compile(r"^if ! (?P<alive>.+?); then kill 1; exit 1; fi; (?P<app>.+)$", re.DOTALL)


def vpn_client_app_tests(tests: list[str]) -> list[str]:
    """A download client's own check, without the VPN-namespace check the program puts before it
    (mediastack/plan/resolve.py `_through_vpn`): the app's port and path come from its own part."""
    if len(tests) == 2 and tests[0] == "CMD-SHELL":
        match = VPN_ALIVE.match(tests[1])
        if match:
            return ["CMD-SHELL", match.group("app")]
    return tests


# gluetun's health server (HEALTH_SERVER_ADDRESS, default 127.0.0.1:9999: qdm12/gluetun-wiki
# setup/options/healthcheck.md), which `/gluetun-entrypoint healthcheck` asks; its control server listens on
# HTTP_CONTROL_SERVER_ADDRESS (the catalog sets :8000). The catalog's image facts: root, NET_ADMIN, /dev/net/tun,
# writes /gluetun (qmcgaw/gluetun Dockerfile, v3.40.0).
GLUETUN_ENTRYPOINT = (
    r"""#!/bin/sh
# Stand-in for gluetun's entrypoint: the tunnel device (NET_ADMIN, /dev/net/tun), its state, its servers.
"""
    + READ_SECRET_FILES
    + r"""health="${HEALTH_SERVER_ADDRESS:-127.0.0.1:9999}"
if [ "${1:-}" = healthcheck ]; then
  timeout -s KILL 8 busybox wget -q -O /dev/null "http://$health/"
  exit $?
fi
trap 'exit 143' TERM
read_secret_files ""  # gluetun reads its *_SECRETFILE files as root (no DAC_OVERRIDE: root must own them)
if [ -c /dev/net/tun ]; then
  # What gluetun does first with its capability: a tun device in the namespace its clients share.
  /usr/sbin/ip tuntap add dev tun0 mode tun 2>/dev/null || /usr/sbin/ip link show tun0 >/dev/null || {
    echo "gluetun stand-in: cannot create tun0 (NET_ADMIN? /dev/net/tun?)" >&2
    exit 1
  }
  /usr/sbin/ip link set tun0 up || exit 1
else
  echo "gluetun stand-in: no /dev/net/tun in the container: no tunnel" >&2
fi
mkdir -p /gluetun && echo '{}' > /gluetun/servers.json || exit 1
httpd -f -p "${HTTP_CONTROL_SERVER_ADDRESS#:}" -h /standin/control &
httpd -f -p "$health" -h /standin/health &
wait
while :; do sleep 3600 & wait $!; done
"""
)


def build_gluetun(engine: dockerd.Engine, reference: str, inputs: dict) -> None:
    """gluetun's stand-in: its entrypoint at /gluetun-entrypoint (also its health-check binary), iproute2's `ip`
    for the tun device, busybox wget at /usr/bin/wget (alpine's), no USER (root)."""
    with tempfile.TemporaryDirectory(prefix="standin") as scratch:
        root = dockerd.busybox_rootfs(Path(scratch), (*dockerd.APPLETS, "pidof", "echo", "env", "grep", "cut"))
        (root / "bin" / "busybox").chmod(0o755)
        dockerd.copy_program(root, "ip", "/usr/sbin/ip")
        (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
        (root / "usr" / "bin" / "wget").symlink_to("/bin/busybox")
        for page in ("control", "health"):
            (root / "standin" / page).mkdir(parents=True)
            (root / "standin" / page / "index.html").write_text("ok\n")
        (root / "gluetun-entrypoint").write_text(GLUETUN_ENTRYPOINT)
        (root / "gluetun-entrypoint").chmod(0o755)
        changes = (
            'ENTRYPOINT ["/gluetun-entrypoint"]',
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV HTTP_CONTROL_SERVER_ADDRESS=:8000",
            f"LABEL org.mediastack.standin={reference}",
        )
        dockerd.import_rootfs(engine, root, reference, changes)


# -- the socket proxy: Debian's haproxy with the image's configuration -----------------------------------------
#
# lscr.io/linuxserver/socket-proxy 3.2.3 (linuxserver/docker-socket-proxy at tag 3.2.3-r0-ls54, commit
# c8c37ed0261cfe890b0eaccf460746d31cdeafdc): root/docker-entrypoint.sh makes /run/haproxy, writes
# /run/haproxy/haproxy.cfg from /templates/haproxy.cfg with @@BIND_PROTO@@ replaced (":2375" when DISABLE_IPV6=1,
# "[::]:2375 v4v6" otherwise) and execs `/usr/sbin/haproxy -f /run/haproxy/haproxy.cfg -W -db`; haproxy itself
# expands ${LOG_LEVEL} and $SOCKET_PATH and reads each section's switch with env(NAME) per request. The rules of
# root/templates/haproxy.cfg, in its order, are rendered below from this table (the template's text is not
# copied): the four container actions allowed by their own switches before anything else, then every method
# but GET refused unless POST=1, then one section per switch, then everything else refused.
SOCKET_PROXY_ACTIONS = (
    ("ALLOW_RESTARTS", "((stop)|(restart)|(kill))"),
    ("ALLOW_START", "start"),
    ("ALLOW_STOP", "stop"),
)
SOCKET_PROXY_SECTIONS = [
    "auth",
    "build",
    "commit",
    "configs",
    "containers",
    "distribution",
    "events",
    "exec",
    "grpc",
    "images",
    "info",
    "networks",
    "nodes",
    "_ping",
    "plugins",
    "secrets",
    "services",
    "session",
    "swarm",
    "system",
    "tasks",
    "version",
    "volumes",
]
# The image's defaults (Dockerfile ENV at the same tag); the container's environment overrides them.
SOCKET_PROXY_DEFAULTS = {
    **dict.fromkeys(
        [
            "ALLOW_RESTARTS",
            "ALLOW_STOP",
            "ALLOW_START",
            "AUTH",
            "BUILD",
            "COMMIT",
            "CONFIGS",
            "CONTAINERS",
            "DISTRIBUTION",
            "EXEC",
            "IMAGES",
            "INFO",
            "NETWORKS",
            "NODES",
            "PLUGINS",
            "POST",
            "SECRETS",
            "SERVICES",
            "SESSION",
            "SWARM",
            "SYSTEM",
            "TASKS",
            "VOLUMES",
        ],
        "0",
    ),
    "EVENTS": "1",
    "PING": "1",
    "VERSION": "1",
    "LOG_LEVEL": "info",
    "SOCKET_PATH": "/var/run/docker.sock",
}
_VERSION_PREFIX = r"^(/v[\d\.]+)?"


def socket_proxy_template() -> str:
    """The image's /templates/haproxy.cfg: its global and defaults settings and its rules, in its order."""
    actions = [
        f"    http-request allow if {{ path,url_dec -m reg -i {_VERSION_PREFIX}/containers/[a-zA-Z0-9_.-]+/{what} }} "
        f"{{ env({switch}) -m bool }}"
        for switch, what in SOCKET_PROXY_ACTIONS
    ]
    sections = [
        f"    http-request allow if {{ path,url_dec -m reg -i {_VERSION_PREFIX}/{section} }} "
        f"{{ env({section.lstrip('_').upper()}) -m bool }}"
        for section in SOCKET_PROXY_SECTIONS
    ]
    timeouts = "http-request 10s,queue 1m,connect 10s,client 10m,server 10m,http-keep-alive 10s,check 10s"
    return "\n".join(
        [
            "global",
            '    log stdout format raw daemon "${LOG_LEVEL}"',
            "    pidfile /run/haproxy.pid",
            "    maxconn 2000",
            "",
            "defaults",
            "    mode http",
            "    log global",
            *(f"    option {o}" for o in ("httplog", "dontlognull", "http-server-close", "redispatch")),
            "    retries 3",
            *(f"    timeout {t}" for t in timeouts.split(",")),
            "    maxconn 2000",
            "",
            "backend docker",
            "    server socket $SOCKET_PATH",
            "",
            "frontend proxy",
            "    bind @@BIND_PROTO@@",
            *actions,
            "    http-request deny unless METH_GET || { env(POST) -m bool }",
            *sections,
            "    http-request deny",
            "    default_backend docker",
            "",
        ]
    )


SOCKET_PROXY_ENTRYPOINT = r"""#!/bin/sh
# The image's root/docker-entrypoint.sh, step for step (the banner left out).
mkdir -p /run/haproxy
if [ "${DISABLE_IPV6:-}" = 1 ]; then
    BIND_PROTO=":2375"
else
    BIND_PROTO="[::]:2375 v4v6"
fi
sed "s/@@BIND_PROTO@@/${BIND_PROTO}/g" /templates/haproxy.cfg > /run/haproxy/haproxy.cfg || exit 1
trap 'exit 143' TERM
# The image execs haproxy; here it runs under the shell so the container outlives it when a test stops it
# (a health check then reports it).
/usr/sbin/haproxy -f /run/haproxy/haproxy.cfg -W -db &
wait
while :; do sleep 3600 & wait $!; done
"""


def build_socket_proxy(engine: dockerd.Engine, reference: str, inputs: dict) -> None:
    """The socket proxy's stand-in: Debian's haproxy with the image's template, entrypoint and defaults; the
    health check's wget; no USER (root)."""
    from conftest import require_tool

    require_tool("haproxy")  # skips with the reason, or fails under CI=true
    with tempfile.TemporaryDirectory(prefix="standin") as scratch:
        root = dockerd.busybox_rootfs(Path(scratch), (*dockerd.APPLETS, "sed", "pidof", "kill"))
        (root / "bin" / "busybox").chmod(0o755)
        dockerd.copy_program(root, "haproxy", "/usr/sbin/haproxy")
        # The health check's wget: alpine's busybox takes --tries and --timeout, Debian's does not: a probe of the
        # URL it is given, first on PATH (as the other stand-ins' health-check binaries).
        (root / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
        (root / "usr" / "local" / "bin" / "wget").write_text(PROBE)
        (root / "usr" / "local" / "bin" / "wget").chmod(0o755)
        (root / "templates").mkdir()
        (root / "templates" / "haproxy.cfg").write_text(socket_proxy_template())
        (root / "docker-entrypoint.sh").write_text(SOCKET_PROXY_ENTRYPOINT)
        (root / "docker-entrypoint.sh").chmod(0o755)
        changes = (
            'ENTRYPOINT ["/docker-entrypoint.sh"]',
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            *(f"ENV {key}={value}" for key, value in SOCKET_PROXY_DEFAULTS.items()),
            "ENV STANDIN_APP=haproxy",
            "ENV STANDIN_URL=",
            f"LABEL org.mediastack.standin={reference}",
        )
        dockerd.import_rootfs(engine, root, reference, changes)


SPECIAL_BUILDERS = {"gluetun": build_gluetun, "socket-proxy": build_socket_proxy}

# -- Stand-in apps that leave what the real check reads ---------------------------------------------------------
# Recyclarr's check (real bash, the catalog's script) reads the newest run's log in /config/logs/cli, named and
# written as Recyclarr does (recyclarr/recyclarr src/Recyclarr.Cli/Logging/FileLogSinkConfigurator.cs at v8.7.1:
# recyclarr_<yyyy-MM-dd_HH-mm-ss>.debug.log, lines `[HH:mm:ss LVL] ...`). The stand-in scheduler logs a good run
# at start, and a failed one when it is stopped, so stopping the app turns the check unhealthy through the real
# script and the real mounts (/config writable by the image's user).
RECYCLARR_SCHEDULER = r"""#!/bin/sh
run() {
  mkdir -p /config/logs/cli || exit 1
  echo "[$(date +%H:%M:%S) $1] $2" > "/config/logs/cli/recyclarr_$(date +%Y-%m-%d_%H-%M-%S).debug.log" || exit 1
}
trap 'sleep 1; run ERR "stand-in: the scheduler was stopped"; exit 1' TERM
run INF "stand-in: synced"
while :; do sleep 3600 & wait $!; done
"""
STANDIN_APPS: dict[str, tuple[str, str]] = {"recyclarr": ("recyclarr-cron", RECYCLARR_SCHEDULER)}


def standin_app(root: Path, inputs: dict) -> tuple[str, ...]:
    """The service's stand-in app in place of httpd, where its check reads something other than an endpoint."""
    name = inputs.get("name", "")
    if name not in STANDIN_APPS:
        return ()
    program, text = STANDIN_APPS[name]
    (root / "standin" / program).write_text(text)
    (root / "standin" / program).chmod(0o755)
    (root / "bin" / "date").symlink_to("busybox")
    return (f"ENV STANDIN_PROGRAM=/standin/{program}", f"ENV STANDIN_APP={program}")


# -- Real programs from Debian inside the stand-ins -----------------------------------------------------------
# catalog service -> (Debian's program, where the real image has it (mediastack/catalog/image_facts.py binaries), the
# command its image runs when the container gives none, as a shell line: None when the image's ENTRYPOINT is the
# program and the container's command its arguments).
REAL_PROGRAMS: dict[str, tuple[str, str, str | None]] = {
    "prometheus": ("/usr/bin/prometheus", "/bin/prometheus", None),
    "alertmanager": ("/usr/bin/prometheus-alertmanager", "/bin/alertmanager", None),
    "node-exporter": ("/usr/bin/prometheus-node-exporter", "/bin/node_exporter", None),
    "blackbox-exporter": ("/usr/bin/prometheus-blackbox-exporter", "/bin/blackbox_exporter", None),
    "postgres-exporter": ("/usr/bin/prometheus-postgres-exporter", "/bin/postgres_exporter", None),
    "redis-exporter": ("/usr/bin/prometheus-redis-exporter", "/redis_exporter", None),
    # linuxserver/docker-qbittorrent root/etc/s6-overlay/s6-rc.d/svc-qbittorrent/run (0700e646): as abc (PUID),
    # `qbittorrent-nox --webui-port="${WEBUI_PORT}" --torrenting-port="${TORRENTING_PORT}"`; its Dockerfile
    # (005e8e05) sets HOME, XDG_CONFIG_HOME and XDG_DATA_HOME to /config, where the seeded qBittorrent.conf is.
    "qbittorrent": (
        "/usr/bin/qbittorrent-nox",
        "/usr/bin/qbittorrent-nox",
        'exec /usr/bin/qbittorrent-nox --webui-port="${WEBUI_PORT:-8080}" --torrenting-port="${TORRENTING_PORT:-6881}"',
    ),
}
# Data files Debian's builds read at run time: Debian's alertmanager reads its default notification template from
# /usr/share (without it the config loads but is not applied, and it never listens).
REAL_PROGRAM_DATA: dict[str, tuple[str, ...]] = {
    "alertmanager": ("/usr/share/prometheus/alertmanager",),
}
# The environment those images set (the Dockerfiles cited above).
REAL_PROGRAM_ENV: dict[str, tuple[str, ...]] = {
    "qbittorrent": ("HOME=/config", "XDG_CONFIG_HOME=/config", "XDG_DATA_HOME=/config"),
}


def real_program_reason(name: str) -> str | None:
    """Why the real program of a service cannot run in its stand-in here (its Debian package missing), or None."""
    if name not in REAL_PROGRAMS:
        return None
    program = REAL_PROGRAMS[name][0]
    return None if Path(program).exists() else f"{program} is not installed (Debian package of {name})"


def real_program(root: Path, inputs: dict) -> tuple[str, ...]:
    """Puts Debian's build of the service's program (and its shared libraries) at the real image's path and has
    the stand-in entrypoint run it, after the same ownership steps, in place of the stand-in httpd; returns the
    image changes. Services Debian does not ship keep the stand-in app."""
    name = inputs.get("name", "")
    if name not in REAL_PROGRAMS:
        return ()
    reason = real_program_reason(name)
    if reason:
        raise dockerd.EngineUnavailable(reason)
    program, path, command = REAL_PROGRAMS[name]
    dockerd.copy_program(root, program, path)
    started = path
    if command is not None:
        started = "/standin/run-" + name
        (root / started.lstrip("/")).write_text(f"#!/bin/sh\n{command}\n")
        (root / started.lstrip("/")).chmod(0o755)
    for data in REAL_PROGRAM_DATA.get(name, ()):
        if Path(data).is_dir():
            shutil.copytree(data, root / data.lstrip("/"), symlinks=False, dirs_exist_ok=True)
    for directory in ("etc/ssl/certs", "usr/share/zoneinfo"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    return (
        f"ENV STANDIN_PROGRAM={started}",
        f"ENV STANDIN_APP={Path(path).name}",  # what stops the app (the health tests kill it by name)
        *(f"ENV {line}" for line in REAL_PROGRAM_ENV.get(name, ())),
    )


# Exposition text a scrape accepts: Prometheus marks the target up when the page parses.
STANDIN_METRICS = (
    "# HELP standin_up The stand-in answers (not the real exporter).\n# TYPE standin_up gauge\nstandin_up 1\n"
)


def metrics_endpoint(root: Path, inputs: dict, app_port: int) -> tuple[str, ...]:
    """A minimal metrics page where the catalog says Prometheus scrapes the service and its real exporter cannot
    run here: on the same port as the stand-in app, or a second httpd on the metrics port."""
    from mediastack.catalog.services import CATALOG

    name = inputs.get("name", "")
    service = CATALOG.get(name)
    if service is None or service.metrics is None or name in REAL_PROGRAMS:
        return ()
    metrics = service.metrics
    same_port = metrics.port == app_port
    page = root / "standin" / ("www" if same_port else "metrics") / metrics.path.lstrip("/")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(STANDIN_METRICS)
    return () if same_port else (f"ENV STANDIN_METRICS_PORT={metrics.port}",)
