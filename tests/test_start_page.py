"""The start page (Homepage): its config generated from the catalog, its widget secrets delivered as files."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import containers, plan, raw_config, require_tool
from mediastack.catalog.services import BUNDLES, CATALOG, Secret, StartPageWidget, WebUI
from mediastack.generate import homepage
from mediastack.generate.files import CONTAINER_PATHS, generate_files, generated_host_path
from mediastack.generate.seeds import QBITTORRENT_USER
from mediastack.host.directories import files_script
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack.plan.resolved import ResolvedStack

# dev runs three bundles only (Pulumi.dev.yaml): no start page.
STACKS = ("home", "prod", "cluster", "cluster-nfs")
PLACEHOLDER = re.compile(r"\{\{(HOMEPAGE_[A-Z0-9_]+)\}\}")
SWARM_SERVICE = "docker:index/service:Service"


def _resolved(cfg: dict[str, Any], stack: str = "custom") -> ResolvedStack:
    vpn = cfg.get("downloads", {}).get("vpn")
    if vpn and isinstance(vpn.get("wireguard_private_key"), dict):  # a Pulumi secret in the file (home)
        vpn["wireguard_private_key"] = "a-key"
    return resolve(parse_stack_config(cfg, stack), stack)


def _files(stack: ResolvedStack) -> dict[str, str]:
    return {p: text for p, text in generate_files(stack).items() if p.startswith("homepage/")}


def _services_yaml(stack: ResolvedStack) -> dict[str, dict[str, dict[str, Any]]]:
    """bundle -> service -> entry, from the generated services.yaml."""
    doc = yaml.safe_load(_files(stack)["homepage/services.yaml"])
    return {
        group: {name: entry for item in items for name, entry in item.items()}
        for g in doc
        for group, items in g.items()
    }


@pytest.mark.parametrize("stack", STACKS)
def test_all_seven_files_parse_and_every_placeholder_has_its_variable_and_file(stack: str) -> None:
    resolved = _resolved(raw_config(stack), stack)
    files = _files(resolved)
    # Homepage copies a skeleton for any of the seven it misses, which its read-only directory refuses.
    assert sorted(files) == sorted(f"homepage/{n}.yaml" for n in homepage.CONFIG_FILES)
    assert sorted(CATALOG["homepage"].uploads) == sorted(files)
    assert {CONTAINER_PATHS[p].rsplit("/", 1)[0] for p in files} == {"/app/config"}
    docs = {path: yaml.safe_load(text) for path, text in files.items()}
    assert isinstance(docs["homepage/services.yaml"], list) and isinstance(docs["homepage/settings.yaml"], dict)
    # The integrations are off: empty documents, as Homepage's own skeletons (src/skeleton/*.yaml).
    assert [docs[f"homepage/{n}.yaml"] for n in ("docker", "kubernetes", "proxmox")] == [None, None, None]
    home = resolved.get("homepage")
    used = {m for text in files.values() for m in PLACEHOLDER.findall(text)}
    variables = {k for k in home.env if k.startswith("HOMEPAGE_FILE_")}
    assert used == variables and used, (used, variables)
    # Each variable names a secret file the service receives, and every secret file is named by one.
    assert {home.env[v] for v in variables} == set(home.secret_files)
    assert all(p.startswith("/app/config/keys/") for p in home.secret_files)
    # Its route's host and the blackbox probe's: /api/* (the widgets' proxy, the health check) answers only those
    # (and localhost, its own Docker health check).
    assert home.web_host == f"home.{resolved.config.domain}"
    assert home.env["HOMEPAGE_ALLOWED_HOSTS"].split(",") == [home.web_host, "homepage:3000"]
    probes = yaml.safe_load(generate_files(resolved)["prometheus/prometheus.yml"])["scrape_configs"]
    targets = next(j for j in probes if j["job_name"] == "blackbox-health")["static_configs"][0]["targets"]
    assert "http://homepage:3000/api/healthcheck" in targets
    ident = resolved.config.identity
    assert (home.env["PUID"], home.env["PGID"]) == (str(ident.puid), str(ident.pgid))


def test_every_enabled_ui_appears_with_its_link_grouped_by_bundle() -> None:
    stack = _resolved(raw_config("prod"), "prod")
    groups = _services_yaml(stack)
    with_ui = [s for s in stack.services if s.spec.web and s.name != "homepage"]
    assert with_ui and {n for g in groups.values() for n in g} == {s.name for s in with_ui}
    for s in with_ui:
        entry = groups[s.spec.bundle][s.name]
        assert entry["href"] == f"https://{s.web_host}/", s.name
    # Groups in catalog (bundle) order, and the layout in settings.yaml names the same groups in that order.
    assert list(groups) == [b for b in BUNDLES if b in groups]
    settings = yaml.safe_load(_files(stack)["homepage/settings.yaml"])
    assert [next(iter(g)) for g in settings["layout"]] == list(groups)
    assert settings["disableUpdateCheck"] is True and settings["hideVersion"] is True
    # A user's subdomain is the link.
    cfg = raw_config("prod")
    cfg["services"] = {**cfg.get("services", {}), "sonarr": {"subdomain": "tv"}}
    moved = _services_yaml(_resolved(cfg))
    assert moved["arr"]["sonarr"]["href"] == "https://tv.media.example.org/"


def test_widgets_come_from_the_catalog_with_keys_only_as_file_placeholders() -> None:
    stack = _resolved(raw_config("prod"), "prod")
    groups = _services_yaml(stack)
    sonarr = groups["arr"]["sonarr"]["widget"]
    assert sonarr == {"type": "sonarr", "url": "http://sonarr:8989", "key": "{{HOMEPAGE_FILE_SONARR_KEY}}"}
    qbt = groups["downloads"]["qbittorrent"]["widget"]
    assert qbt["username"] == QBITTORRENT_USER and qbt["password"] == "{{HOMEPAGE_FILE_QBITTORRENT_PASSWORD}}"
    grafana = groups["monitoring"]["grafana"]["widget"]
    assert grafana["username"] == CATALOG["grafana"].env["GF_SECURITY_ADMIN_USER"] and grafana["version"] == 2
    assert groups["monitoring"]["prometheus"]["widget"] == {"type": "prometheus", "url": "http://prometheus:9090"}
    # Traefik's UI is its own api@internal: no internal address for a widget or a monitor; a link only.
    assert set(groups["core"]["traefik"]) == {"href", "description"}
    home = stack.get("homepage")
    assert home.secret_files["/app/config/keys/sonarr-key"] == Secret("sonarr-api-key", "api_key")
    # Every widget's URL is reachable: the start page shares a network with the service it calls.
    for group in groups.values():
        for name, entry in group.items():
            if "widget" in entry:
                assert set(stack.get(name).networks) & set(home.networks), name


def test_jellyfins_widget_appears_once_its_key_is_set() -> None:
    cfg = raw_config("prod")
    assert "widget" not in _services_yaml(_resolved(cfg))["media"]["jellyfin"]
    assert "HOMEPAGE_FILE_JELLYFIN_KEY" not in _resolved(cfg).get("homepage").env
    cfg["jellyfin_api_key"] = "0123456789abcdef0123456789abcdef"
    stack = _resolved(cfg)
    widget = _services_yaml(stack)["media"]["jellyfin"]["widget"]
    assert widget == {
        "type": "jellyfin",
        "url": "http://jellyfin:8096",
        "key": "{{HOMEPAGE_FILE_JELLYFIN_KEY}}",
        "version": 1,
    }
    assert stack.get("homepage").env["HOMEPAGE_FILE_JELLYFIN_KEY"] == "/app/config/keys/jellyfin-key"
    assert "0123456789abcdef" not in "".join(_files(stack).values())


def test_a_new_catalog_entry_appears_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from mediastack.catalog import services as catalog
    from mediastack.plan import resolve as resolve_module
    from mediastack.plan import start_page

    key = Secret("requests-api-key", "api_key")
    new = replace(
        CATALOG["tdarr"],
        name="requests",
        bundle="companions",
        web=WebUI(5055, "requests"),
        widget=StartPageWidget("seerr", key=key),
        secret_env={"API_KEY": key},
    )
    monkeypatch.setitem(catalog.CATALOG, "requests", new)
    for module in (resolve_module, start_page):
        monkeypatch.setattr(module, "CATALOG", catalog.CATALOG)
    stack = _resolved(raw_config("prod"))
    entry = _services_yaml(stack)["companions"]["requests"]
    assert entry["href"] == "https://requests.media.example.org/"
    assert entry["widget"] == {"type": "seerr", "url": "http://requests:5055", "key": "{{HOMEPAGE_FILE_REQUESTS_KEY}}"}
    home = stack.get("homepage")
    assert home.secret_files["/app/config/keys/requests-key"] == key
    assert home.env["HOMEPAGE_FILE_REQUESTS_KEY"] == "/app/config/keys/requests-key"


@pytest.mark.parametrize(
    ("change", "gone"),
    [
        (lambda cfg: cfg.update(bundles=["media", "arr", "downloads"]), "homepage"),
        (lambda cfg: cfg.update(services={"homepage": {"enabled": False}}), "homepage"),
        (lambda cfg: cfg.update(services={"sonarr": {"enabled": False}}), "sonarr"),
    ],
)
def test_turned_off_it_is_gone_and_so_is_what_it_listed(change, gone: str) -> None:
    cfg = raw_config("prod")
    change(cfg)
    stack = _resolved(cfg)
    assert gone not in stack.enabled
    if gone == "homepage":
        assert not _files(stack) and not any(s.secret_files for s in stack.services)
    else:
        listed = {n for g in _services_yaml(stack).values() for n in g}
        assert gone not in listed and "radarr" in listed
        assert "HOMEPAGE_FILE_SONARR_KEY" not in stack.get("homepage").env


def test_one_host_binds_its_files_and_gets_its_secrets_from_a_secret_step() -> None:
    result = plan("prod")
    c = containers(result)["homepage"]
    assert not c.get("uploads") and not c.get("readOnly")  # Next.js writes .next at run time
    bind = next(m for m in c["mounts"] if m["target"] == "/app/config")
    assert bind == {
        "target": "/app/config",
        "type": "bind",
        "readOnly": True,
        "source": "/srv/media/config/generated/homepage",
    }
    steps = {r.name.rsplit("-storage-", 1)[-1]: r for r in result.resources if r.name.endswith("files")}
    assert steps["secret-files"].inputs["create"] == "[secret]"
    assert "/generated/homepage/services.yaml" in steps["files"].inputs["create"]
    assert "/generated/homepage/keys/" not in steps["files"].inputs["create"]


def test_the_secret_step_writes_each_key_exactly_for_the_user_it_drops_to(tmp_path: Path) -> None:
    """Homepage reads a key file as is (no trim): the file is the value, without a newline."""
    stack = _resolved(raw_config("prod"), "prod")
    home = stack.get("homepage")
    ident = stack.config.identity
    path = generated_host_path(stack.config, home.spec, "/app/config/keys/sonarr-key")
    assert path == "/srv/media/config/generated/homepage/keys/sonarr-key"
    script = tmp_path / "secret.sh"
    script.write_text(files_script({}, {path: ("0123abcd", ident.puid, ident.pgid)}))
    root = tmp_path / "root"
    run = subprocess.run(["sh", str(script)], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    written = root / path.lstrip("/")
    assert written.read_bytes() == b"0123abcd"
    assert oct(written.stat().st_mode & 0o777) == "0o400"
    if os.geteuid() == 0:
        assert (written.stat().st_uid, written.stat().st_gid) == (ident.puid, ident.pgid)


@pytest.mark.parametrize("stack", ("cluster", "cluster-nfs"))
def test_a_swarm_mounts_each_key_as_the_stacks_secret_for_the_user_it_drops_to(stack: str) -> None:
    result = plan(stack)
    spec = next(r.inputs for r in result.resources if r.type == SWARM_SERVICE and r.inputs["name"] == "homepage")
    container = spec["taskSpec"]["containerSpec"]
    config = parse_stack_config(raw_config(stack), stack)
    refs = {r["fileName"]: r for r in container["secrets"]}
    assert refs["/app/config/keys/sonarr-key"]["secretName"] == "mediastack-sonarr-api-key"
    for ref in refs.values():
        assert ref["fileMode"] == 0o400
        assert (ref["fileUid"], ref["fileGid"]) == (str(config.identity.puid), str(config.identity.pgid))
    env = container["env"]
    assert {v for k, v in env.items() if k.startswith("HOMEPAGE_FILE_")} == set(refs)
    configs = {r["fileName"] for r in container["configs"]}
    assert configs == {f"/app/config/{n}.yaml" for n in homepage.CONFIG_FILES}


# Homepage's substituteEnvironmentVars and yaml.load (src/utils/config/config.js at v1.12.3): each HOMEPAGE_FILE_
# variable's file is read as is and replaces its placeholder, then js-yaml (the parser Homepage runs) reads the text.
HOMEPAGE_LOAD = r"""
const fs = require("fs");
const yaml = require("js-yaml");
const [dir, ...names] = process.argv.slice(1);
const out = {};
for (const name of names) {
  let text = fs.readFileSync(`${dir}/${name}`, "utf8");
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("HOMEPAGE_FILE_")) text = text.replaceAll(`{{${key}}}`, fs.readFileSync(value, "utf8"));
  }
  out[name] = yaml.load(text) ?? null;
}
process.stdout.write(JSON.stringify(out));
"""


def test_homepage_reads_each_key_exactly_from_the_files_the_host_step_writes(tmp_path: Path) -> None:
    node = require_tool("node")
    if not Path("/usr/share/nodejs/js-yaml").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node-js-yaml is required in CI (.ci/run installs it)")
        pytest.skip("node-js-yaml is not installed")
    stack = _resolved(raw_config("prod"), "prod")
    home = stack.get("homepage")
    root = tmp_path / "root"
    config_dir = root / "app/config"
    for path, text in _files(stack).items():
        target = root / CONTAINER_PATHS[path].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    # The host step's own script writes the secret files (generated keys are 32 hex characters, passwords
    # letters and digits); a value with a newline would end up inside the key.
    values = {p: f"{secret.id.replace('-', '')[:12]}0123456789abcdef" for p, secret in home.secret_files.items()}
    script = tmp_path / "secrets.sh"
    script.write_text(files_script({}, {p: (v, os.geteuid(), os.getegid()) for p, v in values.items()}))
    run = subprocess.run(["sh", str(script)], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    env = {
        **os.environ,
        "NODE_PATH": "/usr/share/nodejs",
        **{k: str(root) + v for k, v in home.env.items() if k.startswith("HOMEPAGE_FILE_")},
    }
    loaded = subprocess.run(
        [node, "-e", HOMEPAGE_LOAD, str(config_dir), *(f"{n}.yaml" for n in homepage.CONFIG_FILES)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr
    docs = json.loads(loaded.stdout)
    assert docs["docker.yaml"] is None and docs["bookmarks.yaml"] == []
    widgets = {
        name: entry["widget"]
        for group in docs["services.yaml"]
        for items in group.values()
        for item in items
        for name, entry in item.items()
        if "widget" in entry
    }
    assert widgets["sonarr"]["key"] == values["/app/config/keys/sonarr-key"]
    assert widgets["qbittorrent"]["password"] == values["/app/config/keys/qbittorrent-password"]
    assert widgets["grafana"]["password"] == values["/app/config/keys/grafana-password"]
    assert not any("{{" in str(w) for w in widgets.values()), "every placeholder is replaced"
