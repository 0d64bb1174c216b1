"""Each service's health-check start period, as deployed: long enough for that app's first start (a migration,
a model download), short enough that a broken one is reported soon. The table is the specification; the
catalog must produce it on both targets."""

from __future__ import annotations

import pytest

from conftest import CONTAINER, plan

SERVICE = "docker:index/service:Service"

START_PERIOD_S = {
    # Small Go/C daemons: up in seconds.
    "socket-proxy": 15,
    "traefik": 20,
    "artwork-cache": 10,
    "immich-redis": 10,
    "redis": 10,
    "alertmanager": 20,
    "blackbox-exporter": 10,
    "node-exporter": 10,
    "cadvisor": 20,
    "media-exporter": 15,
    "postgres-exporter": 10,
    "redis-exporter": 10,
    "homepage": 20,
    "unpackerr": 30,
    # Databases and Prometheus replay their logs; gluetun must bring the tunnel up.
    "gluetun": 30,
    "immich-postgres": 30,
    "prometheus": 30,
    "grafana": 30,
    # .NET/Python apps migrate their databases on the first start after an upgrade.
    "jellyfin": 60,
    "sonarr": 60,
    "radarr": 60,
    "prowlarr": 60,
    "bazarr": 60,
    "qbittorrent": 60,
    "sabnzbd": 60,
    "immich-server": 60,
    "tdarr": 60,
    "tdarr-node": 60,
    # A cron daemon; its check reads the last sync's log, which is there or not from the first second.
    "recyclarr": 10,
    "seerr": 60,
    # Starts Chromium once to read its user agent before it answers.
    "flaresolverr": 60,
    # Downloads its models on the first start.
    "immich-machine-learning": 120,
    # Copies the whole primary (pg_basebackup) before it answers.
    "immich-postgres-replica": 300,
}


def start_periods(stack: str) -> dict[str, str]:
    found = {}
    for r in plan(stack).resources:
        if r.type == CONTAINER and "healthcheck" in r.inputs:
            found[r.inputs["name"]] = r.inputs["healthcheck"]["startPeriod"]
        elif r.type == SERVICE:
            health = r.inputs["taskSpec"]["containerSpec"].get("healthcheck")
            if health:
                found[r.inputs["name"]] = health["startPeriod"]
    return found


@pytest.mark.parametrize("stack", ["home", "prod", "cluster"])
def test_every_service_has_its_start_period(stack: str) -> None:
    found = start_periods(stack)
    assert len(found) >= 20
    assert found == {name: f"{START_PERIOD_S[name]}s" for name in found}


def test_the_table_covers_every_checked_service() -> None:
    checked = set(start_periods("home")) | set(start_periods("cluster"))
    assert checked == set(START_PERIOD_S)
