"""Host tuning scripts run for real against a sandbox root: twice (idempotent), then reverted exactly."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import containers, plan, require_tool
from mediastack.host.tuning import sysctl_settings, tuning_scripts
from mediastack.model.config import Host

HOST = Host(name="nas", address="nas.home.arpa", cpus=8, memory="32GiB", gpu="none")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "<dir>") for p in sorted(root.rglob("*"))}


def run(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    (root / "etc/sysctl.d").mkdir(parents=True)
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/sysctl.d/10-network.conf").write_text("net.ipv4.ip_forward = 1\n")
    return root


@pytest.mark.parametrize("existing", [None, "vm.swappiness = 60\n"])
def test_sysctl_drop_in(host_root: Path, existing: str | None) -> None:
    scripts = tuning_scripts(HOST)
    if existing:
        (host_root / "etc/sysctl.d/90-mediastack.conf").write_text(existing)
    before = snapshot(host_root)
    first = run(scripts["sysctl-create.sh"], host_root)
    assert first.returncode == 0, first.stderr
    assert "written" in first.stdout
    after = snapshot(host_root)
    text = (host_root / "etc/sysctl.d/90-mediastack.conf").read_text()
    assert "vm.swappiness = 10\n" in text and "fs.inotify.max_user_watches = 2097152\n" in text
    second = run(scripts["sysctl-create.sh"], host_root)
    assert second.returncode == 0 and second.stdout.strip() == "sysctl: unchanged"
    assert snapshot(host_root) == after
    reverted = run(scripts["sysctl-delete.sh"], host_root)
    assert reverted.returncode == 0, reverted.stderr
    assert snapshot(host_root) == before


@pytest.mark.parametrize(
    "existing",
    [None, {"dns": ["192.0.2.53"], "log-driver": "json-file", "storage-opts": ["overlay2.override_kernel_check=true"]}],
)
def test_daemon_json_merge(host_root: Path, existing: dict | None) -> None:
    require_tool("python3")
    scripts = tuning_scripts(HOST)
    target = host_root / "etc/docker/daemon.json"
    if existing:
        target.write_text(json.dumps(existing))
    before = snapshot(host_root)
    first = run(scripts["daemon-create.sh"], host_root)
    assert first.returncode == 0, first.stderr
    merged = json.loads(target.read_text())
    assert merged["log-driver"] == "local" and merged["live-restore"] is True
    assert merged["log-opts"] == {"max-size": "10m", "max-file": "5"}
    if existing:
        assert merged["dns"] == ["192.0.2.53"]  # the user's keys are kept
        assert "storage-opts" not in merged  # the obsolete option is dropped
        assert "restart needed for new containers: yes (" in first.stdout and "log-driver" in first.stdout
    after = snapshot(host_root)
    second = run(scripts["daemon-create.sh"], host_root)
    assert second.returncode == 0 and second.stdout.strip() == "daemon.json: unchanged"
    assert snapshot(host_root) == after
    reverted = run(scripts["daemon-delete.sh"], host_root)
    assert reverted.returncode == 0, reverted.stderr
    assert snapshot(host_root) == before


def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    paths = []
    for name, content in tuning_scripts(HOST).items():
        path = tmp_path / name
        path.write_text(content)
        paths.append(str(path))
    result = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", *paths], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_inotify_watches_follow_the_host() -> None:
    small = Host(name="pi", address="10.0.0.2", cpus=4, memory="4GiB")
    assert sysctl_settings(small)["fs.inotify.max_user_watches"] == "524288"
    assert sysctl_settings(HOST)["fs.inotify.max_user_watches"] == "2097152"


def test_the_stack_applies_them_with_a_revert() -> None:
    commands = {r.name: r for r in plan("prod").resources if r.type == "command:remote:Command"}
    assert {"media-nas-tuning-sysctl", "media-nas-tuning-daemon"} <= set(commands)
    for name in ("media-nas-tuning-sysctl", "media-nas-tuning-daemon"):
        assert commands[name].inputs["delete"] and commands[name].inputs["triggers"]
    assert containers(plan("prod"))  # the plan still renders every container


@pytest.mark.parametrize(("vendor", "expected"), [("0x8086", "intel"), ("0x1002", "amd"), (None, "none")])
def test_gpu_detection_reports_what_the_host_has(tmp_path: Path, vendor: str | None, expected: str) -> None:
    from mediastack.host.tuning import gpu_detect_script

    root = tmp_path / "host"
    root.mkdir()
    if vendor:
        (root / "dev/dri").mkdir(parents=True)
        (root / "dev/dri/renderD128").write_text("")
        (root / "sys/class/drm/renderD128/device").mkdir(parents=True)
        (root / "sys/class/drm/renderD128/device/vendor").write_text(vendor + "\n")
    before = snapshot(root)
    result = subprocess.run(
        ["sh", "-c", gpu_detect_script(HOST)],
        env={**os.environ, "ROOT": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert f"gpu: configured none, detected {expected}" in result.stdout
    if expected != "none":
        assert f"set hosts[].gpu to {expected}" in result.stdout
    assert snapshot(root) == before  # read-only


def test_gpu_detection_is_optional_in_the_stack() -> None:
    from conftest import plan_config, raw_config

    names = {r.name for r in plan("prod").resources}
    assert "media-nas-tuning-gpu-detect" not in names
    cfg = raw_config("prod")
    cfg["hosts"][0]["detect_gpu"] = True
    names = {r.name for r in plan_config(cfg, stack="detect").resources}
    assert "media-nas-tuning-gpu-detect" in names
