"""Files the program generates for other programs, derived from the resolved stack.

Each is checked by its real consumer in the tests (promtool, amtool, blackbox_exporter). The keys
are paths relative to the render directory; `Service.uploads` names the ones a container receives.
"""

from __future__ import annotations

import yaml

from .resolve import ResolvedStack

# Where each generated file lands inside its container.
CONTAINER_PATHS = {
    "prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
    "alertmanager/alertmanager.yml": "/etc/alertmanager/alertmanager.yml",
    "blackbox/config.yml": "/etc/blackbox_exporter/config.yml",
    "grafana/provisioning/datasources/prometheus.yml": "/etc/grafana/provisioning/datasources/prometheus.yml",
}


def _dump(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def prometheus_config(stack: ResolvedStack) -> str:
    enabled = stack.enabled
    scrape: list[dict[str, object]] = []
    for service in stack.services:
        if service.spec.metrics is None:
            continue
        metrics = service.spec.metrics
        scrape.append(
            {
                "job_name": service.name,
                "metrics_path": metrics.path,
                "static_configs": [
                    {
                        "targets": [f"{service.name}:{metrics.port}"],
                        "labels": {"host": service.host.name, "tier": service.tier.value},
                    }
                ],
            }
        )
    probes = sorted(
        f"http://{s.name}:{s.health.probe_port}{s.health.probe_path}"
        for s in stack.services
        if s.health and s.health.probe_port and s.name != "blackbox-exporter"
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
    if "alertmanager" in enabled:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    doc["scrape_configs"] = scrape
    return _dump(doc)


def alertmanager_config(stack: ResolvedStack) -> str:
    # Receivers arrive with the monitoring work; until then alerts are grouped and kept in Alertmanager's UI.
    return _dump(
        {
            "route": {
                "receiver": "default",
                "group_by": ["alertname", "service"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            },
            "receivers": [{"name": "default"}],
        }
    )


def blackbox_config(stack: ResolvedStack) -> str:
    return _dump(
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
    return _dump(
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


GENERATORS = {
    "prometheus/prometheus.yml": prometheus_config,
    "alertmanager/alertmanager.yml": alertmanager_config,
    "blackbox/config.yml": blackbox_config,
    "grafana/provisioning/datasources/prometheus.yml": grafana_datasources,
}


def generate_files(stack: ResolvedStack) -> dict[str, str]:
    """Every generated file the enabled services need, by relative path."""
    wanted = {path for service in stack.services for path in service.spec.uploads}
    return {path: GENERATORS[path](stack) for path in sorted(wanted)}
