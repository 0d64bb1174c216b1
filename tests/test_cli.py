"""`mediastack plan` and `mediastack render` end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, containers, plan
from mediastack_cli.main import app

runner = CliRunner()


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "__main__.py"):
        shutil.copy(ROOT / name, project / name)
    for package in ("components", "mediastack"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    return project


def test_plan_prints_the_tree_and_counts_in_a_real_process(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mediastack_cli", "plan", "--stack", "dev", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mediastack:service:MediaService media-jellyfin" in proc.stdout
    assert "docker:index/container:Container" in proc.stdout and "total" in proc.stdout
    plan = json.loads(out.read_text())
    assert plan["stack"] == "dev"
    types = {r["type"] for r in plan["resources"]}
    assert {
        "mediastack:stack:MediaStack",
        "docker:index/container:Container",
        "docker:index/network:Network",
        "docker:index/remoteImage:RemoteImage",
        "command:local:Command",
    } <= types
    for r in plan["resources"]:
        assert set(r) == {"urn", "type", "name", "parent", "inputs"}
        assert r["urn"].startswith("urn:pulumi:dev::mediastack::")
    jellyfin = next(r for r in plan["resources"] if r["name"] == "media-jellyfin-container")
    assert jellyfin["parent"].endswith("::media-jellyfin")
    assert jellyfin["inputs"]["memory"] == 2048  # inputs as the provider receives them: camelCase, MiB


def test_plan_json_matches_the_resource_counts(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "--stack", "prod", "--project", str(ROOT), "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    count = int(result.output.split(":")[1].split()[0])
    doc = json.loads(out.read_text())
    assert doc["stack"] == "prod" and len(doc["resources"]) == count == len(plan("prod").resources)
    types = Counter(r["type"] for r in doc["resources"])
    assert types["docker:index/container:Container"] == len(containers(plan("prod")))
    assert doc["policy"]["mandatory"] == 0 and doc["policy"]["pack"] == "mediastack"


def test_bad_config_exits_2_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["mediastack:hosts"][0]["memory"] = "8GB"
    doc["config"]["mediastack:identity"]["tz"] = "Moon/Base"
    stack_file.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "mediastack_cli", "plan", "--stack", "dev"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "stack 'dev': 2 config problems in Pulumi.dev.yaml" in proc.stderr
    assert "mediastack:hosts[0].memory = '8GB': decimal unit GB is ambiguous; write 8GiB" in proc.stderr
    assert "mediastack:identity.tz = 'Moon/Base'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unknown_stack_exits_2_and_lists_stacks() -> None:
    result = runner.invoke(app, ["plan", "--stack", "staging", "--project", str(ROOT)])
    assert result.exit_code == 2
    assert "no stack 'staging'" in result.output
    assert "stacks here: cluster, cluster-nfs, dev, home, prod" in result.output


def test_non_namespaced_keys_and_project_defaults_are_read_like_the_cli(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    pulumi_yaml = yaml.safe_load((project / "Pulumi.yaml").read_text())
    pulumi_yaml["config"] = {"mediastack:identity": {"value": {"tz": "Europe/Paris"}}}
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(pulumi_yaml))
    doc = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())
    del doc["config"]["mediastack:identity"]
    doc["config"]["domain"] = doc["config"].pop("mediastack:domain")  # project namespace is implied
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "--stack", "dev", "--project", str(project), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    jellyfin = next(r for r in json.loads(out.read_text())["resources"] if r["name"] == "media-jellyfin-container")
    assert "TZ=Europe/Paris" in jellyfin["inputs"]["envs"]


def test_secure_values_stay_masked(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    doc = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())
    doc["config"]["mediastack:services"]["sonarr"] = {"env": {"SONARR__LOG__LEVEL": {"secure": "v1:abcdef=="}}}
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "--stack", "dev", "--project", str(project), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "v1:abcdef" not in out.read_text()


def test_render_writes_every_generated_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--stack", "prod", "--project", str(ROOT), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        "alertmanager/alertmanager.yml",
        "artwork-cache/nginx.conf",
        "blackbox/config.yml",
        "grafana/dashboards/mediastack-overview.json",
        "grafana/provisioning/dashboards/mediastack.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "homepage/bookmarks.yaml",
        "homepage/docker.yaml",
        "homepage/kubernetes.yaml",
        "homepage/proxmox.yaml",
        "homepage/services.yaml",
        "homepage/settings.yaml",
        "homepage/widgets.yaml",
        "hosts/nas/backup-create.sh",
        "hosts/nas/backup-delete.sh",
        "hosts/nas/daemon-create.sh",
        "hosts/nas/daemon-delete.sh",
        "hosts/nas/gpu-detect.sh",
        "hosts/nas/mediastack-backup-check.service",
        "hosts/nas/mediastack-backup-check.timer",
        "hosts/nas/mediastack-backup.service",
        "hosts/nas/mediastack-backup.sh",
        "hosts/nas/mediastack-backup.timer",
        "hosts/nas/mediastack-qos.service",
        "hosts/nas/qos-create.sh",
        "hosts/nas/qos-delete.sh",
        "hosts/nas/qos.sh",
        "hosts/nas/seeds-create.sh",
        "hosts/nas/storage-create.sh",
        "hosts/nas/storage-delete.sh",
        "hosts/nas/sysctl-create.sh",
        "hosts/nas/sysctl-delete.sh",
        "prometheus/prometheus.yml",
        "prometheus/rules/mediastack.yml",
        "recyclarr/recyclarr.yml",
        "socket-proxy/haproxy.cfg",
        "traefik/dynamic/mediastack.yml",
    ]
    assert (tmp_path / "hosts/nas/storage-create.sh").stat().st_mode & 0o111
    # Generated keys stay out of rendered files: the seed script names each one instead.
    seeds = (tmp_path / "hosts/nas/seeds-create.sh").read_text()
    for secret in ("qbittorrent-password", "sabnzbd-api-key", "bazarr-api-key", "seerr-api-key"):
        assert f"[secret {secret}]" in seeds
    from conftest import plan
    from mediastack_cli.offline import _digest

    rendered = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    for r in plan("prod").resources:
        if r.type.startswith("random:"):
            assert _digest(f"{r.type}/{r.name}")[:24] not in rendered, r.name


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_files_are_what_the_containers_receive(stack: str, tmp_path: Path) -> None:
    from conftest import containers, plan, raw_config

    runner.invoke(app, ["render", "--stack", stack, "--project", str(ROOT), "--out", str(tmp_path)])
    from mediastack.generate.files import CONTAINER_PATHS

    by_container_path = {target: rel for rel, target in CONTAINER_PATHS.items()}
    uploads = [(name, u) for name, c in containers(plan(stack)).items() for u in c.get("uploads", [])]
    # dev: only the artwork cache; prod: Grafana's three too (read-only rootfs containers bind theirs, below)
    assert len(uploads) == (4 if stack == "prod" else 1)
    for name, upload in uploads:
        assert (tmp_path / by_container_path[upload["file"]]).read_text() == upload["content"], name
    from mediastack.generate.files import host_generated_files
    from mediastack.plan.loading import parse_stack_config
    from mediastack.plan.resolve import resolve

    resolved = resolve(parse_stack_config(raw_config(stack), stack), stack)
    bound = {path: text for files in host_generated_files(resolved).values() for path, text in files.items()}
    # Traefik's routes and the socket proxy's template in both; prod: Recyclarr's config and the start page's seven
    # (bound from the host step, below its keys)
    assert len(bound) == (14 if stack == "prod" else 2)
    rendered = {text for text in (p.read_text() for p in tmp_path.rglob("*.y*ml"))}
    rendered |= {p.read_text() for p in tmp_path.rglob("*.cfg")}
    assert set(bound.values()) <= rendered
