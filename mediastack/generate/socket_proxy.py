"""The socket proxy's haproxy template: the image's own (linuxserver/docker-socket-proxy
root/templates/haproxy.cfg at 1b802fff, which its entrypoint renders from /templates/haproxy.cfg into
/run/haproxy/haproxy.cfg, replacing @@BIND_PROTO@@), narrowed to what the stack's one reader needs.

The image opens API sections by prefix: with CONTAINERS=1 every GET under /containers passes, and that includes
each container's logs, files (/archive, /export), processes (/top) and attach. cAdvisor, the reader, calls only
/info, /version and /containers/{id}/json (google/cadvisor v0.54.1 container/docker: Info, ServerVersion,
ContainerInspect; the client pings first). So this template answers GET (and HEAD) of exactly those paths, each
still behind the image's own switch, and refuses everything else with 403 before it reaches the engine, whatever
the other variables say: no write, no container action, no other read.
"""

from __future__ import annotations

from mediastack.plan.resolved import ResolvedStack

# (the image's switch, the path after the optional /v<version> prefix): anchored at both ends.
READS = (
    ("CONTAINERS", r"/containers/[a-zA-Z0-9_.-]+/json"),
    ("INFO", "/info"),
    ("VERSION", "/version"),
    ("PING", "/_ping"),
)
_VERSION_PREFIX = r"^(/v[\d\.]+)?"
_TIMEOUTS = (
    "http-request 10s",
    "queue 1m",
    "connect 10s",
    "client 10m",
    "server 10m",
    "http-keep-alive 10s",
    "check 10s",
)


def socket_proxy_template(stack: ResolvedStack) -> str:
    """The template the image's entrypoint renders: its global, defaults and backend as they are, its frontend
    reduced to the reads in READS."""
    allow = [
        f"    http-request allow if {{ path,url_dec -m reg -i {_VERSION_PREFIX}{path}$ }} {{ env({switch}) -m bool }}"
        for switch, path in READS
    ]
    return "\n".join(
        [
            "# mediastack: the image's template, reads only (mediastack/generate/socket_proxy.py)",
            "global",
            '    log stdout format raw daemon "${LOG_LEVEL}"',
            "    pidfile /run/haproxy.pid",
            "    maxconn 2000",
            "",
            "defaults",
            "    mode http",
            "    log global",
            "    option httplog",
            "    option dontlognull",
            "    option http-server-close",
            "    option redispatch",
            "    retries 3",
            *(f"    timeout {t}" for t in _TIMEOUTS),
            "    maxconn 2000",
            "",
            "backend docker",
            "    server socket $SOCKET_PATH",
            "",
            "frontend proxy",
            "    bind @@BIND_PROTO@@",
            "    http-request deny unless METH_GET",
            *allow,
            "    http-request deny",
            "    default_backend docker",
            "",
        ]
    )
