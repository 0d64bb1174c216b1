"""The download helpers of the companions bundle: FlareSolverr and Unpackerr (issue 19)."""

from __future__ import annotations

from typing import Any

import yaml

from conftest import container_labels, containers, plan, plan_config, raw_config
from mediastack.catalog.services import CATALOG, NetworkRole
from mediastack.generate.files import prometheus_config
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve


def _resolved(cfg: dict[str, Any], stack: str = "prod") -> Any:
    return {s.name: s for s in resolve(parse_stack_config(cfg, stack), stack).services}


def test_unpackerr_runs_as_the_stack_identity_on_the_arr_apps_data_tree() -> None:
    ident = raw_config("prod")["identity"]
    c = containers(plan("prod"))
    unpackerr = c["unpackerr"]
    # The image has no USER (root) and drops nothing itself: the stack sets its identity.
    assert unpackerr["user"] == f"{ident['puid']}:{ident['pgid']}"
    assert unpackerr["readOnly"] is True
    # The same /data bind as the *arr apps and the torrent client: extraction in place, imports stay hardlinks.
    data = [m for m in unpackerr["mounts"] if m["target"] == "/data"]
    assert data == [m for m in c["sonarr"]["mounts"] if m["target"] == "/data"]
    assert data == [m for m in c["qbittorrent"]["mounts"] if m["target"] == "/data"]
    assert container_labels(unpackerr)["mediastack.writes-data"] == "true"
    # The same identity as the linuxserver.io apps: its file and folder modes follow identity.umask (002 here).
    assert container_labels(unpackerr)["mediastack.identity"] == container_labels(c["sonarr"])["mediastack.identity"]
    assert {"UN_FILE_MODE=0664", "UN_DIR_MODE=0775"} <= set(unpackerr["envs"])
    # No key in its environment: each variable names its key's file (filepath:, tests/test_secret_files.py).
    assert "UN_SONARR_0_API_KEY=filepath:/run/secrets/sonarr-api-key" in unpackerr["envs"]


def test_unpackerr_env_points_at_the_enabled_arr_apps_with_their_keys() -> None:
    services = _resolved(raw_config("prod"))
    u = services["unpackerr"]
    assert u.env["UN_SONARR_0_URL"] == "http://sonarr:8989"
    assert u.env["UN_RADARR_0_URL"] == "http://radarr:7878"
    assert u.env["UN_SONARR_0_PATHS_0"] == u.env["UN_RADARR_0_PATHS_0"] == "/data/torrents"
    assert u.env["UN_WEBSERVER_METRICS"] == "true"
    # The very secrets the *arr apps read as their key, so Unpackerr's 32-character check holds.
    assert u.secret_env["UN_SONARR_0_API_KEY"] == services["sonarr"].secret_env["SONARR__AUTH__APIKEY"]
    assert u.secret_env["UN_RADARR_0_API_KEY"] == services["radarr"].secret_env["RADARR__AUTH__APIKEY"]
    assert u.secret_env["UN_SONARR_0_API_KEY"].kind == "api_key"
    assert u.secret_env["UN_SONARR_0_API_KEY"].length == 32


def test_unpackerr_skips_an_arr_that_is_off() -> None:
    cfg = raw_config("prod")
    cfg.setdefault("services", {})["radarr"] = {"enabled": False}
    u = _resolved(cfg)["unpackerr"]
    assert u.env["UN_SONARR_0_URL"] == "http://sonarr:8989"
    assert u.env["UN_RADARR_0_URL"] == ""  # Unpackerr skips an app without a URL


def test_unpackerr_metrics_are_scraped() -> None:
    text = prometheus_config(resolve(parse_stack_config(raw_config("prod"), "prod"), "prod"))
    targets = [
        t
        for job in yaml.safe_load(text)["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert "unpackerr:5656" in targets


def test_flaresolverr_sits_on_backend_only_with_its_health_endpoint() -> None:
    spec = CATALOG["flaresolverr"]
    assert spec.networks == {NetworkRole.backend}
    assert spec.web is None  # no UI, no Traefik route
    c = containers(plan("prod"))["flaresolverr"]
    assert c["healthcheck"]["tests"][-1] == "http://127.0.0.1:8191/health"
    assert [n["name"] for n in c["networksAdvanced"]] == ["mediastack-backend"]
    assert c["memory"] == 1024


def test_companions_follow_what_they_help() -> None:
    cfg = raw_config("prod")
    cfg["bundles"] = ["media", "downloads", "companions"]  # no arr bundle: nothing to help
    names = {c for c in containers(plan_config(cfg, "prod"))}
    assert "unpackerr" not in names and "flaresolverr" not in names
