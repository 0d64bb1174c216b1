"""Monitoring is derived from the catalog: every target once, every query on metrics that exist."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import yaml

from conftest import raw_config
from mediastack.catalog import services as catalog
from mediastack.catalog.services import CATALOG, HealthCheck, Metrics, WebUI
from mediastack.generate.dashboards import overview_dashboard
from mediastack.generate.files import alert_rules, prometheus_config
from mediastack.plan import resolve
from mediastack.plan.loading import parse_stack_config

FUNCTIONS = {
    "sum",
    "rate",
    "irate",
    "increase",
    "avg",
    "avg_over_time",
    "min",
    "max",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "or",
    "and",
    "unless",
    "vector",
    "histogram_quantile",
    "changes",
    "time",
    "bool",
    "group_left",
    "group_right",
    "offset",
    "abs",
    "clamp_min",
    "topk",
    "bottomk",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in FUNCTIONS and not re.fullmatch(r"\d+[smhd]?|e\d+", n)}


def resolved(stack: str = "prod"):
    return resolve.resolve(parse_stack_config(raw_config(stack), stack), stack)


def provided(stack) -> set[str]:
    found = {"up"}
    for s in stack.services:
        if s.spec.metrics:
            found.update(s.spec.metrics.provides)
    if stack.config.backups.repository and "node-exporter" in stack.enabled:
        from mediastack.host.backup import BACKUP_METRICS

        found.update(BACKUP_METRICS)  # the backup tool's textfile, exported by node-exporter
    return found


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (service) (rate(traefik_service_requests_total{code=~"5.."}[5m]))') == {
        "traefik_service_requests_total"
    }
    assert metric_names("host:cpu_busy:ratio5m > 0.8") == {"host:cpu_busy:ratio5m"}


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_every_query_uses_metrics_the_stack_scrapes(stack_name: str) -> None:
    stack = resolved(stack_name)
    rules = yaml.safe_load(alert_rules(stack))["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    available = provided(stack) | recorded
    if "prometheus" not in stack.enabled:
        return  # no Prometheus, no Grafana: nothing queries anything
    for group in rules:
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= available | provided(resolved("prod")), rule
    dashboard = overview_dashboard(stack)
    assert dashboard["panels"], "the prod dashboard has panels"
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            missing = metric_names(target["expr"]) - available
            assert not missing, (panel["title"], missing)


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    titles = {p["title"] for p in overview_dashboard(resolved())["panels"]}
    for words in (
        "response time",
        "queues",
        "Cache hit rate",
        "Transcoding",
        "network throughput",
        "Host CPU",
        "Container memory",
    ):
        assert any(words.lower() in t.lower() for t in titles), words
    json.dumps(overview_dashboard(resolved()))  # serialisable


def test_every_target_once_and_none_missed() -> None:
    stack = resolved()
    doc = yaml.safe_load(prometheus_config(stack))
    jobs = [j["job_name"] for j in doc["scrape_configs"]]
    assert len(jobs) == len(set(jobs))
    targets = [
        t
        for j in doc["scrape_configs"]
        if j["job_name"] != "blackbox-health"
        for sc in j["static_configs"]
        for t in sc["targets"]
    ]
    assert len(targets) == len(set(targets))
    expected = {
        f"{s.name}:{s.spec.metrics.port}" for s in stack.services if s.spec.metrics and not s.spec.metrics.targets
    }
    # A multi-target exporter scrapes each service it watches, by name, through itself.
    expected |= {
        s.spec.metrics.targets.format(c)
        for s in stack.services
        if s.spec.metrics and s.spec.metrics.targets
        for c in s.spec.companion_of
        if c in stack.enabled
    }
    assert set(targets) == expected
    redis = next(j for j in doc["scrape_configs"] if j["job_name"] == "redis-exporter")
    assert redis["metrics_path"] == "/scrape" and sorted(redis["static_configs"][0]["targets"]) == [
        "redis://immich-redis:6379",
        "redis://redis:6379",
    ]
    assert {"target_label": "__address__", "replacement": "redis-exporter:9121"} in redis["relabel_configs"]
    assert stack.get("redis-exporter").command == ("--redis.addr=",)
    assert "REDIS_ADDR" not in stack.get("redis-exporter").env
    probes = next(j for j in doc["scrape_configs"] if j["job_name"] == "blackbox-health")["static_configs"][0][
        "targets"
    ]
    assert len(probes) == len(set(probes))
    assert set(probes) == {
        f"http://{s.name}:{s.health.probe_port}{s.health.probe_path}"
        for s in stack.services
        if s.health and s.health.probe_port and s.name != "blackbox-exporter"
    } | {f"http://{s.name}:{s.spec.probe[0]}{s.spec.probe[1]}" for s in stack.services if s.spec.probe}
    # Images that can run no health check of their own are probed from outside (exportarr's /healthz).
    assert "http://sonarr-exporter:9707/healthz" in probes
    for name in (
        "node-exporter",
        "cadvisor",
        "traefik",
        "prometheus",
        "grafana",
        "postgres-exporter",
        "redis-exporter",
        "sonarr-exporter",
        "radarr-exporter",
        "prowlarr-exporter",
    ):
        assert name in jobs


def test_adding_a_catalog_entry_adds_its_target(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = replace(
        CATALOG["bazarr"],
        name="lidarr",
        image="lscr.io/linuxserver/lidarr",
        tag="2.13.3",
        web=WebUI(8686, "lidarr"),
        metrics=Metrics(8686, "/metrics"),
        health=HealthCheck.http("curl", 8686, "/ping"),
    )
    monkeypatch.setitem(catalog.CATALOG, "lidarr", extra)
    monkeypatch.setattr(resolve, "CATALOG", catalog.CATALOG)
    doc = yaml.safe_load(prometheus_config(resolved()))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["lidarr"]["static_configs"][0]["targets"] == ["lidarr:8686"]
    assert "http://lidarr:8686/ping" in jobs["blackbox-health"]["static_configs"][0]["targets"]


def test_jellyfin_is_scraped_only_with_its_metrics_turned_on() -> None:
    """Jellyfin maps /metrics only when EnableMetrics is set in system.xml (off by default): the first-start
    seed sets it, in the file and element Jellyfin reads (ServerConfiguration, JELLYFIN_CONFIG_DIR=/config)."""
    import xml.etree.ElementTree as ET

    from mediastack.generate.seeds import SecretPlaceholders, seed_files

    stack = resolved()
    doc = yaml.safe_load(prometheus_config(stack))
    assert "jellyfin" in [j["job_name"] for j in doc["scrape_configs"]]
    jellyfin_config = next(m.source for m in stack.get("jellyfin").mounts if m.target == "/config")
    seeds = seed_files(stack.config, stack.enabled, SecretPlaceholders())
    root = ET.fromstring(seeds[f"{jellyfin_config}/system.xml"])
    assert root.tag == "ServerConfiguration" and root.findtext("EnableMetrics") == "true"
