"""Files the program generates for other programs, derived from the resolved stack.

Each is checked by its real consumer in the tests (promtool, amtool, blackbox_exporter). The keys
are paths relative to the render directory; `Service.uploads` names the ones a container receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from mediastack.catalog.services import TRAEFIK_DYNAMIC_DIR
from mediastack.generate import homepage
from mediastack.generate.alerts import alert_rules
from mediastack.generate.dashboards import dashboard_json, dashboards_provider
from mediastack.generate.recyclarr import recyclarr_config
from mediastack.generate.replica import pg_hba, replica_entrypoint, replica_init
from mediastack.generate.socket_proxy import socket_proxy_template
from mediastack.model.config import StackConfig
from mediastack.plan.generated_paths import (  # noqa: F401  (re-exported)
    CONTAINER_PATHS,
    GENERATED,
    binds_generated_files,
    generated_dir,
    generated_host_dir,
    generated_host_path,
)
from mediastack.plan.placement import placement
from mediastack.plan.resolved import ResolvedStack
from mediastack.plan.routing import Route, public_after_logins, routes
from mediastack.quoting import yaml_document


def host_generated_files(stack: ResolvedStack, files: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Service -> host path -> content: the generated files the host step writes for read-only-rootfs
    containers (from `files`, the whole stack's, when `stack` is one host's view of a cluster)."""
    found: dict[str, dict[str, str]] = {}
    if not any(binds_generated_files(s.spec, stack.config) for s in stack.services):
        return found
    files = generate_files(stack) if files is None else files
    for service in stack.services:
        spec = service.spec
        if binds_generated_files(spec, stack.config):
            found[spec.name] = {
                generated_host_path(stack.config, spec, CONTAINER_PATHS[path]): files[path] for path in spec.uploads
            }
    return found


def prometheus_config(stack: ResolvedStack) -> str:
    enabled = stack.enabled
    scrape: list[dict[str, object]] = []
    for service in stack.services:
        if service.spec.metrics is None:
            continue
        metrics = service.spec.metrics
        job: dict[str, object] = {"job_name": service.name, "metrics_path": metrics.path}
        where = placement(service.spec, stack.config)
        if where.is_global:
            # One task per node behind one name: Swarm's tasks.<service> DNS lists every task to scrape.
            job["dns_sd_configs"] = [{"names": [f"tasks.{service.name}"], "type": "A", "port": metrics.port}]
            job["relabel_configs"] = [{"target_label": "tier", "replacement": service.tier.value}]
        elif metrics.targets:
            # A multi-target exporter (redis_exporter's README): each watched service is a target passed as
            # ?target=, the exporter is the address scraped.
            watched = [metrics.targets.format(c) for c in service.spec.companion_of if c in enabled]
            job["static_configs"] = [{"targets": watched, "labels": {"tier": service.tier.value}}]
            job["relabel_configs"] = [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"{service.name}:{metrics.port}"},
            ]
        else:
            # A floating Swarm service has no fixed host to name.
            host = {"host": service.host.name} if where.host else {}
            job["static_configs"] = [
                {"targets": [f"{service.name}:{metrics.port}"], "labels": {**host, "tier": service.tier.value}}
            ]
        scrape.append(job)
    probes = sorted(
        [
            f"http://{s.name}:{s.health.probe_port}{s.health.probe_path}"
            for s in stack.services
            if s.health and s.health.probe_port and s.name != "blackbox-exporter"
        ]
        + [f"http://{s.name}:{s.spec.probe[0]}{s.spec.probe[1]}" for s in stack.services if s.spec.probe]
    )
    if "blackbox-exporter" in enabled and probes:
        scrape.append(
            {
                "job_name": "blackbox-health",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": probes}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": "blackbox-exporter:9115"},
                ],
            }
        )
    doc: dict[str, object] = {
        "global": {
            "scrape_interval": "30s",
            "scrape_timeout": "10s",
            "evaluation_interval": "30s",
            "external_labels": {"stack": stack.stack},
        },
    }
    doc["rule_files"] = ["/etc/prometheus/rules/*.yml"]
    if "alertmanager" in enabled:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    doc["scrape_configs"] = scrape
    return yaml_document(doc)


SMTP_PASSWORD_FILE = "/etc/alertmanager/smtp_password"


def config_secret_files(config: StackConfig) -> dict[str, dict[str, str]]:
    """Service -> container path -> secret content: the secrets the user set that an image reads from a file."""
    smtp = config.alerting.email
    return {"alertmanager": {SMTP_PASSWORD_FILE: smtp.password}} if smtp and smtp.password else {}


def alertmanager_config(stack: ResolvedStack) -> str:
    """Routing by severity; receivers from the stack; per-service alerts inhibited while their host is down."""
    alerting = stack.config.alerting
    receivers: list[dict[str, object]] = [{"name": "ui-only"}]
    default = "ui-only"
    webhooks = [{"url": url, "send_resolved": True} for url in alerting.webhook_urls]
    if alerting.ntfy_url:
        # ntfy renders Alertmanager's webhook payload itself with its `alertmanager` template.
        webhooks.append({"url": f"{alerting.ntfy_url}?template=alertmanager", "send_resolved": True})
    if webhooks:
        receivers.append({"name": "notify", "webhook_configs": webhooks})
        default = "notify"
    routes: list[dict[str, object]] = []
    if alerting.email:
        email: dict[str, object] = {
            "to": alerting.email.to,
            "from": alerting.email.sender,
            "smarthost": alerting.email.smarthost,
            "send_resolved": True,
        }
        if alerting.email.username:
            email["auth_username"] = alerting.email.username
        if alerting.email.password:
            email["auth_password_file"] = SMTP_PASSWORD_FILE  # the secret itself never enters this file
        critical: dict[str, object] = {"name": "critical", "email_configs": [email]}
        if webhooks:
            critical["webhook_configs"] = webhooks
        receivers.append(critical)
        routes.append({"receiver": "critical", "matchers": ['severity="critical"'], "repeat_interval": "1h"})
    routes.append({"receiver": default, "matchers": ['severity="warning"'], "repeat_interval": "12h"})
    return yaml_document(
        {
            "route": {
                "receiver": default,
                "group_by": ["alertname", "host", "service"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "routes": routes,
            },
            "inhibit_rules": [
                {
                    # A host that is down explains every alert about what runs on it.
                    "source_matchers": ['alertname="HostDown"'],
                    "target_matchers": ['alertname=~"ServiceDown|ProbeFailed|ContainerRestartLoop|ApiLatencyHigh"'],
                    "equal": ["host"],
                },
                {
                    "source_matchers": ['severity="critical"'],
                    "target_matchers": ['severity="warning"'],
                    "equal": ["alertname", "host", "service"],
                },
            ],
            "receivers": receivers,
        }
    )


def blackbox_config(stack: ResolvedStack) -> str:
    return yaml_document(
        {
            "modules": {
                "http_2xx": {
                    "prober": "http",
                    "timeout": "10s",
                    "http": {"preferred_ip_protocol": "ip4", "valid_status_codes": [], "follow_redirects": True},
                },
            },
        }
    )


def grafana_datasources(stack: ResolvedStack) -> str:
    return yaml_document(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": "prometheus",
                    "access": "proxy",
                    "url": "http://prometheus:9090",
                    "isDefault": True,
                    "editable": False,
                }
            ],
        }
    )


def artwork_cache_config(stack: ResolvedStack) -> str:
    """nginx in front of Jellyfin's image endpoints: a bounded disk cache keyed by the whole request URI.

    Jellyfin's image URLs carry the size and format in the query (fillWidth, quality, tag), so the key
    keeps the query string: a 300px poster and a 1080px backdrop are different entries. Stale copies are
    served while one request refreshes them in the background (stale-while-revalidate), and while
    Jellyfin is down or restarting.
    """
    size = stack.config.paths.artwork_cache_size
    return f"""worker_processes auto;
pid /var/run/nginx.pid;
error_log /dev/stderr warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;

    # Docker's embedded DNS: the upstream is resolved when it is used, so nginx starts before Jellyfin does.
    resolver 127.0.0.11 valid=30s ipv6=off;

    proxy_cache_path /var/cache/nginx/artwork levels=1:2 keys_zone=artwork:16m max_size={size // 1024**2}m
                     inactive=30d use_temp_path=off;

    server {{
        listen 8080;

        location = /healthz {{
            return 200 "ok\n";
        }}

        location / {{
            set $jellyfin http://jellyfin:8096;
            proxy_pass $jellyfin;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;

            proxy_cache artwork;
            proxy_cache_methods GET HEAD;
            proxy_cache_key "$request_method$request_uri";
            proxy_cache_valid 200 30d;
            proxy_cache_valid 404 1m;
            proxy_cache_lock on;
            proxy_cache_background_update on;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            # Jellyfin's own cache headers are for browsers; the shared cache keeps images by the rules above.
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


def _traefik_http(stack: ResolvedStack, chosen: list[Route], suffix: str = "") -> dict[str, object]:
    """Routers (named route.name + suffix), their services and middlewares for Traefik's file provider."""
    config = stack.config
    tls: dict[str, str] = {"certResolver": "letsencrypt"} if config.tls.acme_email else {}
    routers: dict[str, object] = {}
    services: dict[str, object] = {}
    middlewares: dict[str, object] = {}
    for route in chosen:
        name = f"{route.name}{suffix}"
        chain = []
        if route.lan_only:
            middlewares[f"{name}-lan"] = {"ipAllowList": {"sourceRange": list(config.lan_ranges)}}
            chain.append(f"{name}-lan")
        if route.compress:
            middlewares[f"{name}-compress"] = {"compress": {}}
            chain.append(f"{name}-compress")
        router: dict[str, object] = {"rule": route.rule, "entryPoints": ["websecure"]}
        if route.priority is not None:
            router["priority"] = route.priority
        if chain:
            router["middlewares"] = chain
        if route.url == "api@internal":
            router["service"] = "api@internal"
        else:
            router["service"] = name
            services[name] = {"loadBalancer": {"servers": [{"url": route.url}]}}
        router["tls"] = dict(tls)
        routers[name] = router
    http: dict[str, object] = {"routers": routers, "services": services}
    if middlewares:
        http["middlewares"] = middlewares
    return http


def traefik_dynamic_config(stack: ResolvedStack) -> str:
    """Traefik's routes, from the catalog: its file provider reads this instead of the Docker API, so Traefik
    needs no socket access. The shape is Traefik v3's file provider (doc.traefik.io/traefik/v3.5/routing/
    providers/file/, reference/dynamic-configuration/file.yaml): http.routers, http.services, http.middlewares.
    LAN-only routers get an ipAllowList of lan_ranges before compression. Where public routes wait for the logins
    (routing.public_after_logins), every route here is LAN-only and `traefik_public_routes` opens them."""
    gated = public_after_logins(stack)
    chosen = [replace(r, lan_only=True) if gated else r for r in routes(stack)]
    return yaml_document({"http": _traefik_http(stack, chosen)})


PUBLIC_ROUTES_FILE = f"{TRAEFIK_DYNAMIC_DIR}/public.yml"  # opened once the logins exist


def traefik_public_routes(stack: ResolvedStack) -> tuple[str, list[str]] | None:
    """The file that opens the public routes once their logins exist, and the services whose logins it waits
    for; None when nothing waits. Each public route gets a second router, `<name>-public`, without the LAN
    allow-list and one above the LAN router's priority (Traefik's default priority is the rule's length), so it
    answers everyone as soon as Traefik reads the file."""
    if not public_after_logins(stack):
        return None
    public = [r for r in routes(stack) if not r.lan_only]
    if not public:
        return None
    raised = [replace(r, priority=(r.priority or len(r.rule)) + 1) for r in public]
    text = yaml_document({"http": _traefik_http(stack, raised, suffix="-public")})
    return text, sorted({r.login_of for r in public})


GENERATORS = {
    "prometheus/prometheus.yml": prometheus_config,
    "alertmanager/alertmanager.yml": alertmanager_config,
    "prometheus/rules/mediastack.yml": alert_rules,
    "blackbox/config.yml": blackbox_config,
    "artwork-cache/nginx.conf": artwork_cache_config,
    "traefik/dynamic/mediastack.yml": traefik_dynamic_config,
    "grafana/provisioning/datasources/prometheus.yml": grafana_datasources,
    "grafana/provisioning/dashboards/mediastack.yml": dashboards_provider,
    "grafana/dashboards/mediastack-overview.json": dashboard_json,
    "immich-postgres/pg_hba.conf": pg_hba,
    "immich-postgres/replica.sh": replica_entrypoint,
    "immich-postgres/replica-init.sh": replica_init,
    "socket-proxy/haproxy.cfg": socket_proxy_template,
    **homepage.GENERATORS,
    "recyclarr/recyclarr.yml": recyclarr_config,
}


def generate_files(stack: ResolvedStack) -> dict[str, str]:
    """Every generated file the enabled services need, by relative path."""
    wanted = {path for service in stack.services for path in service.spec.uploads}
    return {path: GENERATORS[path](stack) for path in sorted(wanted)}
