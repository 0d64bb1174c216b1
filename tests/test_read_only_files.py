"""Generated files for read-only-rootfs containers: written by the host step, bound as a directory."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from conftest import ROOT, SMTP_PASSWORD, containers, plan_config, raw_config, require_tool, with_smtp
from mediastack.generate.files import CONTAINER_PATHS, SMTP_PASSWORD_FILE, generate_files, host_generated_files
from mediastack.host.directories import files_script
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack_cli.analyzer import run_pack


def _prod():
    return resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")


def test_the_files_script_writes_each_file_whole_and_again_the_same(tmp_path: Path) -> None:
    stack = _prod()
    generated = host_generated_files(stack)
    assert set(generated) == {
        "prometheus",
        "alertmanager",
        "blackbox-exporter",
        "traefik",
        "socket-proxy",
        "recyclarr",
        "homepage",
    }
    files = {path: content for by_path in generated.values() for path, content in by_path.items()}
    script = tmp_path / "files.sh"
    script.write_text(
        files_script(files, {"/srv/media/config/generated/alertmanager/smtp_password": ("pw\n", 65534, 65534)})
    )
    check = subprocess.run([require_tool("shellcheck"), "--shell=sh", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    root = tmp_path / "root"
    root.mkdir()
    for _ in range(2):
        run = subprocess.run(["sh", str(script)], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True)
        assert run.returncode == 0 and run.stdout.strip() == "files: 15 written", run.stdout + run.stderr
    rendered = generate_files(stack)
    written = root / "srv/media/config/generated/prometheus/prometheus.yml"
    assert written.read_text() == rendered["prometheus/prometheus.yml"]
    assert (root / "srv/media/config/generated/prometheus/rules/mediastack.yml").read_text() == rendered[
        "prometheus/rules/mediastack.yml"
    ]
    assert oct(written.stat().st_mode & 0o777) == "0o444"
    secret = root / "srv/media/config/generated/alertmanager/smtp_password"
    assert secret.read_text() == "pw\n" and oct(secret.stat().st_mode & 0o777) == "0o400"
    assert not list(root.rglob("*.new")), "no half-written file is left"


def test_a_secret_file_of_a_read_only_container_goes_in_a_secret_step_of_its_own() -> None:
    result = plan_config(with_smtp("prod", **raw_config("prod").get("alerting", {})), stack="smtp")
    c = containers(result)
    assert not c["alertmanager"].get("uploads"), "no upload into its read-only rootfs, the secret included"
    steps = {r.name.rsplit("-storage-", 1)[-1]: r for r in result.resources if r.name.endswith("files")}
    assert steps["secret-files"].inputs["create"] == "[secret]"
    assert SMTP_PASSWORD not in str(result.to_json())
    # The other files stay readable: the pack still finds Traefik's routes and Prometheus' config.
    assert "prometheus.yml" in steps["files"].inputs["create"] and "traefik" in steps["files"].inputs["create"]
    report = run_pack(ROOT / "policies", result.resources)
    assert report.mandatory == [], report.mandatory
    assert CONTAINER_PATHS["alertmanager/alertmanager.yml"].rsplit("/", 1)[0] == SMTP_PASSWORD_FILE.rsplit("/", 1)[0]


def test_the_files_script_decodes_what_it_was_given() -> None:
    script = files_script({"/x/a.yml": "a: 1\n"})
    block = script.split("<<'MEDIASTACK_FILE'\n", 1)[1].split("MEDIASTACK_FILE", 1)[0]
    assert base64.b64decode(block).decode() == "a: 1\n"
