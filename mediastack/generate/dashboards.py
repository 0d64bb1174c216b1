"""Grafana dashboards as code, derived from what the stack runs.

Each panel is added only when the scrape job that provides its metrics is in the stack, and every
query may use only metric families the catalog says some enabled scrape target provides (or the
recording rules in alerts.alert_rules): a test holds every query to that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mediastack.catalog.services import CATALOG
from mediastack.plan.resolved import ResolvedStack

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str
    needs: tuple[str, ...]  # catalog services whose metrics the queries read
    kind: str = "timeseries"


def _panels(stack: ResolvedStack) -> list[Panel]:
    enabled = stack.enabled
    # exportarr's prowlarr mode has no queue collector (internal/commands/arr.go): Prowlarr has its indexers.
    arr_queues = tuple(
        (metric, app)
        for name, spec in CATALOG.items()  # catalog order: the panel's series keep their order
        if name in enabled and (metrics := spec.metrics)
        for app in spec.companion_of
        for metric in metrics.provides
        if metric == f"{app}_queue_total"
    )
    candidates = [
        Panel(
            "Service p95 response time",
            (("service:request_duration_seconds:p95_5m", "{{service}}"),),
            "s",
            ("traefik",),
        ),
        Panel(
            "Requests per second by service",
            (("sum by (service) (rate(traefik_service_requests_total[5m]))", "{{service}}"),),
            "reqps",
            ("traefik",),
        ),
        Panel(
            "Health probes failing",
            (("count(probe_success == 0) or vector(0)", "failing probes"),),
            "none",
            ("blackbox-exporter",),
            kind="stat",
        ),
        Panel(
            "Download queues",
            tuple((expr, legend) for expr, legend in arr_queues),
            "none",
            tuple(f"{app}-exporter" for _, app in arr_queues),
        ),
        Panel(
            "Indexers (Prowlarr)",
            (
                ("sum(prowlarr_indexer_enabled_total)", "enabled"),
                ("count(prowlarr_indexer_unavailable == 1) or vector(0)", "unavailable"),
            ),
            "none",
            ("prowlarr-exporter",),
        ),
        Panel(
            "Cache hit rate (Redis)",
            (
                (
                    "sum by (instance) (rate(redis_keyspace_hits_total[5m])) / (sum by (instance) "
                    "(rate(redis_keyspace_hits_total[5m])) + "
                    "sum by (instance) (rate(redis_keyspace_misses_total[5m])))",
                    "{{instance}}",
                ),
            ),
            "percentunit",
            ("redis-exporter",),
        ),
        Panel(
            "Database buffer hit rate (Immich PostgreSQL)",
            (
                (
                    "sum(rate(pg_stat_database_blks_hit[5m])) / (sum(rate(pg_stat_database_blks_hit[5m])) + "
                    "sum(rate(pg_stat_database_blks_read[5m])))",
                    "buffer hits",
                ),
            ),
            "percentunit",
            ("postgres-exporter",),
        ),
        Panel(
            "Library scan duration (last scan)",
            (("media_scan_duration_seconds", "last scan"),),
            "s",
            ("media-exporter",),
        ),
        Panel(
            "Transcoding: queue and live transcodes",
            (("transcoding_queue_depth", "{{source}} queue"), ("transcoding_active", "{{source}} live")),
            "none",
            ("media-exporter",),
        ),
        Panel(
            "Transcoding containers CPU",
            (('sum by (name) (rate(container_cpu_usage_seconds_total{name=~"jellyfin|tdarr.*"}[5m]))', "{{name}}"),),
            "cores",
            ("cadvisor",),
        ),
        Panel(
            "Host network throughput",
            (
                (
                    'sum by (host) (rate(node_network_receive_bytes_total{device!~"lo|veth.*|br-.*|docker.*"}[5m]))',
                    "{{host}} in",
                ),
                (
                    'sum by (host) (rate(node_network_transmit_bytes_total{device!~"lo|veth.*|br-.*|docker.*"}[5m]))',
                    "{{host}} out",
                ),
            ),
            "Bps",
            ("node-exporter",),
        ),
        Panel(
            "Host CPU and memory",
            (("host:cpu_busy:ratio5m", "{{host}} CPU"), ("host:memory_used:ratio", "{{host}} memory")),
            "percentunit",
            ("node-exporter",),
        ),
        Panel(
            "Host disk use",
            (("host:filesystem_used:ratio", "{{host}} {{mountpoint}}"),),
            "percentunit",
            ("node-exporter",),
        ),
        Panel(
            "Container memory against limit",
            (("container:memory_used:ratio", "{{name}}"),),
            "percentunit",
            ("cadvisor",),
        ),
        Panel(
            "Container network throughput",
            (
                ('sum by (name) (rate(container_network_receive_bytes_total{name!=""}[5m]))', "{{name}} in"),
                ('sum by (name) (rate(container_network_transmit_bytes_total{name!=""}[5m]))', "{{name}} out"),
            ),
            "Bps",
            ("cadvisor",),
        ),
    ]
    return [p for p in candidates if p.queries and all(n in enabled for n in p.needs)]


def overview_dashboard(stack: ResolvedStack) -> dict[str, object]:
    panels = []
    for i, panel in enumerate(_panels(stack)):
        panels.append(
            {
                "id": i + 1,
                "type": panel.kind,
                "title": panel.title,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                    for j, (expr, legend) in enumerate(panel.queries)
                ],
            }
        )
    return {
        "uid": "mediastack-overview",
        "title": f"mediastack {stack.stack}",
        "tags": ["mediastack"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def dashboard_json(stack: ResolvedStack) -> str:
    return json.dumps(overview_dashboard(stack), indent=2) + "\n"


def dashboards_provider(stack: ResolvedStack) -> str:
    import yaml

    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "mediastack",
                    "folder": "mediastack",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "options": {"path": "/etc/grafana/dashboards", "foldersFromFilesStructure": False},
                }
            ],
        },
        sort_keys=False,
    )
