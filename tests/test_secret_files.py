"""Secrets reach containers as files, never as values in an environment that Docker shows to anyone who can
inspect a container; and the socket proxy's template answers only the reads its reader needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from engine_apply import CONTAINER, unsealed_plan

from conftest import ROOT, plan, raw_config, require_tool
from mediastack.catalog.services import CATALOG
from mediastack.generate.files import generate_files
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import config_secret, resolve
from mediastack_cli.offline import _digest, _strip_secure, read_stack

SERVICE = "docker:index/service:Service"
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
# Images that can read a secret only from their environment (docs/security.md names them): none today.
NO_FILE_FORM: set[tuple[str, str]] = set()


def test_every_secret_a_catalog_entry_passes_has_a_file_form_its_image_documents() -> None:
    missing = {
        (s.name, key) for s in CATALOG.values() for key in s.secret_env if s.facts and s.facts.file_form(key) is None
    }
    assert missing == NO_FILE_FORM
    for s in CATALOG.values():
        if s.secret_env:
            assert s.facts and s.facts.sources_for("secrets"), f"{s.name}: no upstream file vouches for its file form"


def _secret_values(stack: str, result) -> set[str]:
    """Every secret value the mock plan holds: the mocks' generated passwords and keys, and the config's secrets."""
    values = set()
    for r in result.resources:
        seed = _digest(f"{r.type}/{r.name}")
        if r.type == "random:index/randomPassword:RandomPassword":
            values.add((seed * 4)[: int(r.inputs.get("length", 32))])
        elif r.type == "random:index/randomId:RandomId" and not r.name.endswith("secret-files-key"):
            values.add(seed[: int(r.inputs.get("byteLength", 16)) * 2])
    config = resolve(parse_stack_config(_strip_secure(raw_config(stack)), stack), stack)
    for sid, secret in config.secrets.items():
        if secret.kind == "config" and config_secret(config.config, sid):
            values.add(str(config_secret(config.config, sid)))
    return values


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_or_service_carries_a_secret_value_in_its_env(stack: str) -> None:
    sealed = plan(stack)
    for r in sealed.resources:
        if r.type == CONTAINER:
            assert r.inputs["envs"] != "[secret]" and "[secret]" not in r.inputs["envs"], r.name
    revealed = unsealed_plan(read_stack(ROOT, stack))
    values = _secret_values(stack, revealed)
    assert values, "the stack has secrets"
    envs = []
    for r in revealed.resources:
        if r.type == CONTAINER:
            envs += [(r.name, line) for line in r.inputs.get("envs") or []]
        elif r.type == SERVICE:
            env = r.inputs["taskSpec"]["containerSpec"].get("env") or {}
            envs += [(r.name, f"{k}={v}") for k, v in env.items()]
    leaked = [(name, line) for name, line in envs for v in values if v in line]
    assert not leaked, leaked
    # The values are where the containers read them: the secret-files step's standard input (one host).
    if not stack.startswith("cluster"):
        (step,) = [r for r in revealed.resources if r.name.endswith("-storage-secrets")]
        files = [v for v in values if v in step.inputs["stdin"] or _b64_in(v, step.inputs["stdin"])]
        assert files, "the secret-files step carries the secrets"


def _b64_in(value: str, script: str) -> bool:
    import base64
    import re

    blocks = re.findall(r"<<'MEDIASTACK_FILE'\n(.*?)MEDIASTACK_FILE", script, re.DOTALL)
    return any(base64.b64decode(b).decode() == value for b in blocks)


def test_each_secret_file_belongs_to_the_image_user_and_is_bound_read_only() -> None:
    result = plan("prod")
    containers = {r.inputs["name"]: r.inputs for r in result.resources if r.type == CONTAINER}
    sonarr = containers["sonarr"]
    assert "FILE__SONARR__AUTH__APIKEY=/run/secrets/sonarr-api-key" in sonarr["envs"]
    (mount,) = [m for m in sonarr["mounts"] if m["target"] == "/run/secrets"]
    assert mount == {
        "target": "/run/secrets",
        "type": "bind",
        "source": "/srv/media/config/secrets/sonarr",
        "readOnly": True,
    }
    grafana = containers["grafana"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana-admin-password" in grafana["envs"]
    # The keyed digest that replaces a container when one of its secrets changes.
    labels = {label["label"]: label["value"] for label in sonarr["labels"]}
    assert len(labels["mediastack.secret-files"]) == 16
    step = next(r for r in result.resources if r.name == "media-nas-storage-secrets")
    assert "/srv/media/config/secrets/sonarr/sonarr-api-key" in step.inputs["delete"]


def test_the_secret_files_script_writes_0400_files_in_0700_directories(tmp_path: Path) -> None:
    from mediastack.host.directories import secret_files_script

    script = secret_files_script({"/srv/s/sonarr/key": ("abc", 1000, 1000), "/srv/s/grafana/pw": ("x y", 472, 0)})
    done = subprocess.run(["sh", "-s"], input=script, text=True, env={"ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    key = tmp_path / "srv/s/sonarr/key"
    assert key.read_text() == "abc"  # exactly the value: exportarr reads the file whole, untrimmed
    assert key.stat().st_mode & 0o777 == 0o400 and key.parent.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "srv/s/grafana/pw").read_text() == "x y"


def test_the_proxy_template_passes_haproxy_and_opens_only_the_readers_paths(tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    stack = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")
    template = generate_files(stack)["socket-proxy/haproxy.cfg"]
    # What the image's entrypoint does with it (DISABLE_IPV6 unset).
    rendered = template.replace("@@BIND_PROTO@@", "[::]:2375 v4v6")
    (tmp_path / "haproxy.cfg").write_text(rendered)
    done = subprocess.run(
        [haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        env={"LOG_LEVEL": "warning", "SOCKET_PATH": "/var/run/docker.sock", "PATH": "/usr/sbin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    allows = [line for line in rendered.splitlines() if "http-request allow" in line]
    assert len(allows) == 4 and all(line.endswith("-m bool }") and "$ }" in line for line in allows)
    assert "/containers/[a-zA-Z0-9_.-]+/json$" in allows[0]
    assert "http-request deny unless METH_GET\n" in rendered and "env(POST)" not in rendered


def test_unpackerr_takes_its_keys_files_behind_filepath_and_seerr_has_no_key_in_its_environment() -> None:
    result = plan("prod")
    containers = {r.inputs["name"]: r.inputs for r in result.resources if r.type == CONTAINER}
    unpackerr = containers["unpackerr"]
    # golift/cnfgfile reads the file a string field names behind `filepath:` (Unpackerr pkg/unpackerr/start.go).
    assert "UN_SONARR_0_API_KEY=filepath:/run/secrets/sonarr-api-key" in unpackerr["envs"]
    assert "UN_RADARR_0_API_KEY=filepath:/run/secrets/radarr-api-key" in unpackerr["envs"]
    (mount,) = [m for m in unpackerr["mounts"] if m["target"] == "/run/secrets"]
    assert mount["source"] == "/srv/media/config/secrets/unpackerr" and mount["readOnly"] is True
    step = next(r for r in result.resources if r.name == "media-nas-storage-secrets")
    assert "/srv/media/config/secrets/unpackerr/sonarr-api-key" in step.inputs["delete"]
    seerr = containers["seerr"]
    assert not [e for e in seerr["envs"] if "API_KEY" in e] and not [
        m for m in seerr["mounts"] if m["target"] == "/run/secrets"
    ], "Seerr's key is seeded into its settings.json (test_seeds.py)"
    swarm = next(r for r in plan("cluster").resources if r.name.endswith("-unpackerr-service"))
    spec = swarm.inputs["taskSpec"]["containerSpec"]
    assert spec["env"]["UN_SONARR_0_API_KEY"] == "filepath:/run/secrets/sonarr-api-key"
    assert "/run/secrets/sonarr-api-key" in [f["fileName"] for f in spec["secrets"]]
