"""Recyclarr: its generated recyclarr.yml (held to Recyclarr's own JSON schema), its schedule, its keys, its
config section's errors, and its health check."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from conftest import containers, load_generated_yaml, plan, plan_config, raw_config, refused_config
from mediastack.catalog.services import CATALOG
from mediastack.generate.files import generate_files
from mediastack.host.backup import backup_plan, backup_tool
from mediastack.model.calendar import cron_expression
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack.plan.resolved import ResolvedStack

# recyclarr/recyclarr schemas/ at v8.7.1 (commit 01e2b68f229e97db3bc383e2a47c3cab99db83fb), MIT; see its README.
SCHEMA_DIR = Path(__file__).parent / "recyclarr_schema"
# The address the templates name (`# yaml-language-server: $schema=https://schemas.recyclarr.dev/v8/...`): the
# schema's relative $refs (config/quality-profiles.json, ...) resolve against it.
SCHEMA_BASE = "https://schemas.recyclarr.dev/v8/"
FILE = "recyclarr/recyclarr.yml"


def _validator() -> Draft7Validator:
    registry: Registry = Registry()
    for path in SCHEMA_DIR.rglob("*.json"):
        uri = SCHEMA_BASE + path.relative_to(SCHEMA_DIR).as_posix()
        registry = registry.with_resource(uri, Resource.from_contents(json.loads(path.read_text()), DRAFT7))
    root = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    return Draft7Validator({**root, "$id": SCHEMA_BASE + "config-schema.json"}, registry=registry)


VALIDATOR = _validator()


def schema_errors(text: str) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(load_generated_yaml(text))
    ]


def _resolved(config: dict[str, Any], stack: str = "prod") -> ResolvedStack:
    return resolve(parse_stack_config(config, stack), stack)


def prod() -> dict[str, Any]:
    return copy.deepcopy(raw_config("prod"))


def with_recyclarr(**section: Any) -> dict[str, Any]:
    cfg = prod()
    cfg["recyclarr"] = {**cfg.get("recyclarr", {}), **section}
    return cfg


# -- the generated file, held to Recyclarr's schema ------------------------------------------------------


def test_the_schema_refuses_what_recyclarr_refuses() -> None:
    """The vendored schema and its $refs are really read: a wrong key deep inside an instance is caught."""
    assert schema_errors("sonarr:\n  s:\n    base_url: http://sonarr:8989\n    api_key: x\n") == []
    bad = "sonarr:\n  s:\n    base_url: http://x\n    quality_profiles:\n    - trash_id: 1\n      colour: red\n"
    errors = schema_errors(bad)
    assert any("colour" in e for e in errors), errors
    assert any("quality_profiles/0/trash_id" in e for e in errors), errors


@pytest.mark.parametrize("stack", ["prod", "cluster"])
def test_the_generated_file_is_valid_for_recyclarr(stack: str) -> None:
    text = generate_files(_resolved(raw_config(stack), stack))[FILE]
    assert schema_errors(text) == []
    doc = load_generated_yaml(text)
    assert set(doc) == {"sonarr", "radarr"}
    assert doc["sonarr"]["sonarr"]["base_url"] == "http://sonarr:8989"
    assert doc["radarr"]["radarr"]["base_url"] == "http://radarr:7878"
    # The keys stay out of the file: Recyclarr reads each from the secret file it names (!file).
    assert "api_key: !file '/run/secrets/sonarr-api-key'" in text
    assert "api_key: !file '/run/secrets/radarr-api-key'" in text
    assert doc["sonarr"]["sonarr"]["quality_definition"] == {"type": "series"}
    assert doc["radarr"]["radarr"]["quality_definition"] == {"type": "movie"}


def test_the_default_is_what_the_config_templates_sync() -> None:
    """recyclarr/config-templates (branch v8): sonarr/templates/web-1080p.yml and radarr/templates/hd-bluray-web.yml."""
    doc = load_generated_yaml(generate_files(_resolved(prod()))[FILE])
    sonarr, radarr = doc["sonarr"]["sonarr"], doc["radarr"]["radarr"]
    assert sonarr["quality_profiles"] == [
        {"trash_id": "72dae194fc92bf828f32cde7744e51a1", "reset_unmatched_scores": {"enabled": True}}
    ]
    assert radarr["quality_profiles"] == [
        {"trash_id": "d1d67249d3890e49bc12e275d989a7e9", "reset_unmatched_scores": {"enabled": True}}
    ]
    assert [g["trash_id"] for g in sonarr["custom_format_groups"]["add"]] == [
        "158188097a58d7687dee647e04af0da3",  # [Optional] Golden Rule HD
        "85fae4a2294965b75710ef2989c850eb",  # [Streaming Services] HD/UHD boost
        "59c3af66780d08332fdc64e68297098f",  # [Unwanted] Unwanted Formats
    ]
    assert [g["trash_id"] for g in radarr["custom_format_groups"]["add"]] == [
        "f8bf8eab4617f12dfdbd16303d8da245",
        "a3ac6af01d78e4f21fcb75f601ac96df",
    ]
    assert len(radarr["custom_format_groups"]["add"][1]["select"]) == 11
    assert "skip" not in sonarr["custom_format_groups"]


def test_what_it_syncs_follows_the_config() -> None:
    cfg = with_recyclarr(
        sonarr={
            "quality_profiles": ["d1498e7d189fbe6c7110ceaabb7473e6", "72dae194fc92bf828f32cde7744e51a1"],
            "custom_format_groups": {"skip": ["abe720fab2d27682adc2a735136cec02"]},
            "quality_definition": False,
            "reset_unmatched_scores": False,
        },
        radarr={"enabled": False},
    )
    text = generate_files(_resolved(cfg))[FILE]
    assert schema_errors(text) == []
    doc = load_generated_yaml(text)
    assert set(doc) == {"sonarr"}, "radarr's sync is off"
    sonarr = doc["sonarr"]["sonarr"]
    assert [p["trash_id"] for p in sonarr["quality_profiles"]] == [
        "d1498e7d189fbe6c7110ceaabb7473e6",
        "72dae194fc92bf828f32cde7744e51a1",
    ]
    assert all(p["reset_unmatched_scores"] == {"enabled": False} for p in sonarr["quality_profiles"])
    assert "quality_definition" not in sonarr
    # Keys left out keep the template's value; a list given replaces the template's.
    assert sonarr["custom_format_groups"] == {"skip": ["abe720fab2d27682adc2a735136cec02"]}


def test_an_app_that_is_off_is_left_out_with_its_key() -> None:
    cfg = prod()
    cfg.setdefault("services", {})["radarr"] = {"enabled": False}
    stack = _resolved(cfg)
    doc = load_generated_yaml(generate_files(stack)[FILE])
    assert set(doc) == {"sonarr"}
    assert set(stack.get("recyclarr").secret_env) == {"SONARR_API_KEY"}


def test_it_runs_only_beside_sonarr_or_radarr_and_in_its_bundle() -> None:
    cfg = prod()
    cfg["services"] = {**cfg.get("services", {}), "sonarr": {"enabled": False}, "radarr": {"enabled": False}}
    assert "recyclarr" not in _resolved(cfg).enabled
    cfg = prod()
    cfg["bundles"] = ["media", "arr", "downloads", "monitoring", "photos", "transcoding", "cache"]
    assert "recyclarr" not in _resolved(cfg).enabled
    cfg = prod()
    cfg["services"] = {**cfg.get("services", {}), "recyclarr": {"enabled": False}}
    assert "recyclarr" not in _resolved(cfg).enabled
    assert "recyclarr" in _resolved(prod()).enabled


# -- keys, schedule, container -----------------------------------------------------------------------------


def test_it_gets_the_apps_own_generated_keys_as_secrets() -> None:
    stack = _resolved(prod())
    recyclarr = stack.get("recyclarr")
    assert recyclarr.secret_env["SONARR_API_KEY"] == stack.get("sonarr").secret_env["SONARR__AUTH__APIKEY"]
    assert recyclarr.secret_env["RADARR_API_KEY"] == stack.get("radarr").secret_env["RADARR__AUTH__APIKEY"]
    assert "API_KEY" not in " ".join(recyclarr.env)
    result = plan("prod")
    c = containers(result)["recyclarr"]
    # No key in its environment: the files recyclarr.yml names (!file) are bound where it names them.
    assert c["envs"] != "[secret]" and not [e for e in c["envs"] if "API_KEY" in e], c["envs"]
    (mount,) = [m for m in c["mounts"] if m["target"] == "/run/secrets"]
    assert mount["source"] == "/srv/media/config/secrets/recyclarr" and mount["readOnly"] is True
    named = re.findall(r"!file '([^']+)'", generate_files(stack)[FILE])
    step = next(r for r in result.resources if r.name == "media-nas-storage-secrets")
    for path in named:
        assert path.startswith("/run/secrets/")
        assert f"/srv/media/config/secrets/recyclarr/{path.removeprefix('/run/secrets/')}" in step.inputs["delete"]
    assert sorted(named) == ["/run/secrets/radarr-api-key", "/run/secrets/sonarr-api-key"]


def test_the_schedule_is_the_images_cron() -> None:
    assert _resolved(prod()).get("recyclarr").env["CRON_SCHEDULE"] == "30 4 * * *"
    cfg = with_recyclarr(schedule="Sat,Sun *-*-* 06:15")
    assert _resolved(cfg).get("recyclarr").env["CRON_SCHEDULE"] == "15 6 * * 6,0"
    assert _resolved(prod()).get("recyclarr").env["TZ"] == "Europe/Berlin", "cron runs in the stack's time zone"


@pytest.mark.parametrize(
    ("calendar", "cron"),
    [
        ("daily", "0 0 * * *"),
        ("hourly", "0 * * * *"),
        ("weekly", "0 0 * * 1"),
        ("Mon..Fri 0/6:30", "30 0,6,12,18 * * 1,2,3,4,5"),
        ("Sun *-*-* 05:00:00", "0 5 * * 0"),
        ("*-*-* 1..3:05", "5 1,2,3 * * *"),
    ],
)
def test_calendar_to_cron(calendar: str, cron: str) -> None:
    assert cron_expression(calendar) == cron


def test_the_container_is_bounded_read_only_and_backed_up() -> None:
    spec = CATALOG["recyclarr"]
    assert spec.bundle == "companions" and spec.networks == frozenset({"backend"})
    c = containers(plan("prod"))["recyclarr"]
    assert c["readOnly"] is True and c["user"] == "1000:1000"
    assert float(c["cpus"]) == 0.5 and c["memory"] > 0 and c["memoryReservation"] > 0
    assert [n["name"] for n in c["networksAdvanced"]] == ["mediastack-backend"]
    mounts = {m["target"]: m for m in c["mounts"]}
    assert mounts["/config/configs"]["readOnly"] is True
    assert mounts["/config/configs"]["source"] == "/srv/media/config/generated/recyclarr"
    assert mounts["/config"]["source"] == "/srv/media/config/recyclarr"
    assert not c.get("uploads")
    swarm = next(r for r in plan("cluster").resources if r.name.endswith("-recyclarr-service"))
    spec = swarm.inputs["taskSpec"]["containerSpec"]
    assert [c["fileName"] for c in spec["configs"]] == ["/config/configs/recyclarr.yml"]
    assert spec["readOnly"] is True and spec["user"] == "1000:1000"
    assert not [k for k in spec["env"] if "API_KEY" in k], spec["env"]
    files = sorted(f["fileName"] for f in spec["secrets"])
    assert files == ["/run/secrets/radarr-api-key", "/run/secrets/sonarr-api-key"]
    tool = backup_tool(backup_plan(_resolved(prod())))
    assert "recyclarr) echo files" in tool
    # Its state (state/: which custom formats and profiles it made in each app) is kept; the guides' clones
    # and the run logs are not.
    assert "/srv/media/config/recyclarr/resources" in tool and "/srv/media/config/recyclarr/logs" in tool


# -- config errors ------------------------------------------------------------------------------------------

CASES = [
    (with_recyclarr(schedule="at dawn"), "mediastack:recyclarr.schedule", ["'at dawn'", "HH:MM"]),
    (
        with_recyclarr(schedule="*-*-* 04:30:15"),
        "mediastack:recyclarr.schedule",
        ["seconds other than :00", "whole minutes"],
    ),
    (with_recyclarr(schedule="04:30; rm -rf /"), "mediastack:recyclarr.schedule", ["only ASCII letters"]),
    (
        with_recyclarr(sonarr={"quality_profiles": ["WEB-1080p"]}),
        "mediastack:recyclarr.sonarr.quality_profiles[0]",
        ["'WEB-1080p' is not a TRaSH Guides trash_id", "recyclarr list quality-profiles"],
    ),
    (
        with_recyclarr(radarr={"quality_profiles": []}),
        "mediastack:recyclarr.radarr.quality_profiles",
        ["at least 1"],
    ),
    (
        with_recyclarr(radarr={"quality_profiles": ["d1d67249d3890e49bc12e275d989a7e9"] * 2}),
        "mediastack:recyclarr.radarr.quality_profiles",
        ["d1d67249d3890e49bc12e275d989a7e9 is listed more than once"],
    ),
    (
        with_recyclarr(sonarr={"custom_format_groups": {"add": [{"trash_id": "x"}]}}),
        "mediastack:recyclarr.sonarr.custom_format_groups.add[0].trash_id",
        ["'x' is not a TRaSH Guides trash_id"],
    ),
    (
        with_recyclarr(sonarr={"profiles": ["72dae194fc92bf828f32cde7744e51a1"]}),
        "mediastack:recyclarr.sonarr.profiles",
        ["unknown key"],
    ),
    (
        with_recyclarr(sonarr={"enabled": False}, radarr={"enabled": False}),
        "mediastack:recyclarr",
        ["would sync nothing", "services.recyclarr.enabled: false"],
    ),
]


@pytest.mark.parametrize(("config", "path", "words"), CASES, ids=[c[1] + f"#{i}" for i, c in enumerate(CASES)])
def test_bad_config_is_named(config: dict[str, Any], path: str, words: list[str]) -> None:
    message = refused_config(config, path, words)
    assert "Traceback" not in message


def test_a_bad_schedule_stops_the_program_with_one_line() -> None:
    with pytest.raises(pulumi.RunError) as caught:
        plan_config(with_recyclarr(schedule="sometimes"), "prod")
    lines = str(caught.value).splitlines()
    assert lines[0] == "stack 'prod': 1 config problem in Pulumi.prod.yaml", lines
    assert lines[1].startswith("  - mediastack:recyclarr.schedule = 'sometimes': "), lines


# -- the health check: bash builtins over the newest sync log ---------------------------------------------


def _health(config_dir: Path) -> int:
    spec = CATALOG["recyclarr"]
    assert spec.health is not None
    kind, shell, flag, script = spec.health.test
    assert (kind, shell, flag) == ("CMD", "bash", "-c")
    bash = shutil.which("bash")
    assert bash, "bash is part of Debian's essential set"
    # The same script, pointed at a test directory instead of the container's /config.
    return subprocess.run([bash, "-c", script.replace("/config/", f"{config_dir}/")], check=False).returncode


def test_the_health_check_fails_while_the_last_sync_failed(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "cli"
    assert _health(tmp_path) == 0, "no sync yet (the first runs on the schedule): healthy"
    logs.mkdir(parents=True)
    (logs / "recyclarr_2026-11-25_04-30-00.debug.log").write_text(
        "[04:30:00 INF] Processing Sonarr Server: [sonarr]\n[04:30:02 DBG] Custom formats synced\n"
    )
    assert _health(tmp_path) == 0
    (logs / "recyclarr_2026-11-26_04-30-00.debug.log").write_text(
        "[04:30:00 INF] Processing Sonarr Server: [sonarr]\n"
        "[04:30:01 ERR] HTTP error: Unauthorized (401)\n"
        "[04:30:01 INF] Completed with errors\n"
    )
    assert _health(tmp_path) == 1, "the newest sync logged an error"
    (logs / "recyclarr_2026-11-27_04-30-00.debug.log").write_text("[04:30:00 FTL] Unhandled exception\n")
    assert _health(tmp_path) == 1
    (logs / "recyclarr_2026-11-28_04-30-00.debug.log").write_text("[04:30:00 INF] Processing\n[04:30:03 WRN] x\n")
    assert _health(tmp_path) == 0, "only the newest sync counts; a warning is not a failure"
