"""Every alert fires on a bad series and stays silent on a healthy one: `promtool test rules`.

The rules are the file `mediastack render` writes for prod. Annotations (templated text) are checked by
`promtool check rules` on the real file; the unit tests run on a copy without them, so they assert the
expression, the `for:` duration and the labels.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, SMTP_PASSWORD, require_tool, with_smtp
from mediastack_cli.main import app

HOST = {"host": "nas"}

# alert -> (input series when broken, input series when healthy, eval time, labels of the firing alert)
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]], str, dict[str, str]]] = {
    "HostDown": (
        [{"series": 'up{job="node-exporter",instance="node-exporter:9100",host="nas"}', "values": "0x20"}],
        [{"series": 'up{job="node-exporter",instance="node-exporter:9100",host="nas"}', "values": "1x20"}],
        "5m",
        {"job": "node-exporter", "instance": "node-exporter:9100", **HOST, "severity": "critical"},
    ),
    "ServiceDown": (
        [{"series": 'up{job="sonarr-exporter",instance="sonarr-exporter:9707",host="nas"}', "values": "0x30"}],
        [{"series": 'up{job="sonarr-exporter",instance="sonarr-exporter:9707",host="nas"}', "values": "1x30"}],
        "10m",
        {"job": "sonarr-exporter", "instance": "sonarr-exporter:9707", **HOST, "severity": "critical"},
    ),
    "ProbeFailed": (
        [{"series": 'probe_success{job="blackbox-health",instance="http://sonarr:8989/ping"}', "values": "0x30"}],
        [{"series": 'probe_success{job="blackbox-health",instance="http://sonarr:8989/ping"}', "values": "1x30"}],
        "10m",
        {"job": "blackbox-health", "instance": "http://sonarr:8989/ping", "severity": "critical"},
    ),
    "HostCpuHigh": (  # idle grows 3 s per 30 s step: 10 % idle, 90 % busy
        [{"series": 'node_cpu_seconds_total{mode="idle",cpu="0",host="nas"}', "values": "0+3x80"}],
        [{"series": 'node_cpu_seconds_total{mode="idle",cpu="0",host="nas"}', "values": "0+27x80"}],
        "30m",
        {**HOST, "severity": "warning"},
    ),
    "HostMemoryHigh": (
        [
            {"series": 'node_memory_MemAvailable_bytes{host="nas"}', "values": "1000000000x40"},
            {"series": 'node_memory_MemTotal_bytes{host="nas"}', "values": "10000000000x40"},
        ],
        [
            {"series": 'node_memory_MemAvailable_bytes{host="nas"}', "values": "5000000000x40"},
            {"series": 'node_memory_MemTotal_bytes{host="nas"}', "values": "10000000000x40"},
        ],
        "15m",
        {**HOST, "severity": "warning"},
    ),
    "HostDiskFull": (
        [
            {"series": 'node_filesystem_avail_bytes{fstype="ext4",mountpoint="/srv",host="nas"}', "values": "5x40"},
            {"series": 'node_filesystem_size_bytes{fstype="ext4",mountpoint="/srv",host="nas"}', "values": "100x40"},
        ],
        [
            {"series": 'node_filesystem_avail_bytes{fstype="ext4",mountpoint="/srv",host="nas"}', "values": "50x40"},
            {"series": 'node_filesystem_size_bytes{fstype="ext4",mountpoint="/srv",host="nas"}', "values": "100x40"},
            # a full tmpfs is not a disk
            {"series": 'node_filesystem_avail_bytes{fstype="tmpfs",mountpoint="/run",host="nas"}', "values": "0x40"},
            {"series": 'node_filesystem_size_bytes{fstype="tmpfs",mountpoint="/run",host="nas"}', "values": "100x40"},
        ],
        "15m",
        {"fstype": "ext4", "mountpoint": "/srv", **HOST, "severity": "critical"},
    ),
    "ContainerRestartLoop": (
        [{"series": 'container_start_time_seconds{name="sonarr",host="nas"}', "values": "1+1x40"}],
        [{"series": 'container_start_time_seconds{name="sonarr",host="nas"}', "values": "100x40"}],
        "15m",
        {"name": "sonarr", **HOST, "severity": "warning"},
    ),
    "ContainerNearMemoryLimit": (
        [
            {
                "series": 'container_memory_working_set_bytes{name="immich-machine-learning",host="nas"}',
                "values": "95x40",
            },
            {
                "series": 'container_spec_memory_limit_bytes{name="immich-machine-learning",host="nas"}',
                "values": "100x40",
            },
        ],
        [
            {
                "series": 'container_memory_working_set_bytes{name="immich-machine-learning",host="nas"}',
                "values": "50x40",
            },
            {
                "series": 'container_spec_memory_limit_bytes{name="immich-machine-learning",host="nas"}',
                "values": "100x40",
            },
            # no limit (0) must not divide into an alert
            {"series": 'container_memory_working_set_bytes{name="unbounded",host="nas"}', "values": "95x40"},
            {"series": 'container_spec_memory_limit_bytes{name="unbounded",host="nas"}', "values": "0x40"},
        ],
        "15m",
        {"name": "immich-machine-learning", **HOST, "severity": "warning"},
    ),
    "ApiLatencyHigh": (  # every request between 100 and 300 ms: p95 ~ 290 ms
        [
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="0.1"}',
                "values": "0x60",
            },
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="0.3"}',
                "values": "0+10x60",
            },
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="+Inf"}',
                "values": "0+10x60",
            },
        ],
        [
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="0.1"}',
                "values": "0+10x60",
            },
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="0.3"}',
                "values": "0+10x60",
            },
            {
                "series": 'traefik_service_request_duration_seconds_bucket{service="sonarr@docker",le="+Inf"}',
                "values": "0+10x60",
            },
        ],
        "20m",
        {"service": "sonarr@docker", "severity": "warning"},
    ),
    "CertificateExpiring": (  # at eval time (2h = 7200 s) the certificate has 5 days left; healthy: 60
        [{"series": 'traefik_tls_certs_not_after{cn="media.example.org"}', "values": "439200x300"}],
        [{"series": 'traefik_tls_certs_not_after{cn="media.example.org"}', "values": "5191200x300"}],
        "2h",
        {"cn": "media.example.org", "severity": "warning"},
    ),
    "LibraryScanSlow": (
        [{"series": 'media_scan_duration_seconds{job="media-exporter",host="nas"}', "values": "450x10"}],
        [{"series": 'media_scan_duration_seconds{job="media-exporter",host="nas"}', "values": "120x10"}],
        "1m",
        {"job": "media-exporter", **HOST, "severity": "warning"},
    ),
    "LibraryScanFailed": (
        [{"series": 'media_scan_last_success{job="media-exporter",host="nas"}', "values": "0x10"}],
        [{"series": 'media_scan_last_success{job="media-exporter",host="nas"}', "values": "1x10"}],
        "1m",
        {"job": "media-exporter", **HOST, "severity": "warning"},
    ),
    "TranscodeQueueBackedUp": (
        [{"series": 'transcoding_queue_depth{source="tdarr",host="nas"}', "values": "25x80"}],
        [{"series": 'transcoding_queue_depth{source="tdarr",host="nas"}', "values": "25x20 3x60"}],  # drained
        "40m",
        {"source": "tdarr", **HOST, "severity": "warning"},
    ),
    "MediaSourceUnreachable": (
        [{"series": 'media_exporter_source_up{source="jellyfin",host="nas"}', "values": "0x40"}],
        [{"series": 'media_exporter_source_up{source="jellyfin",host="nas"}', "values": "1x40"}],
        "20m",
        {"source": "jellyfin", **HOST, "severity": "warning"},
    ),
    # prod backs up daily (03:30) with 6 h of grace: overdue after 30 h (108000 s). Never succeeded: the install
    # time stands in; a success wins over the install time.
    "BackupTooOld": (
        [
            {
                "series": 'mediastack_backup_installed_timestamp_seconds{job="node-exporter",host="nas"}',
                "values": "0x3800",
            }
        ],
        [
            {
                "series": 'mediastack_backup_installed_timestamp_seconds{job="node-exporter",host="nas"}',
                "values": "0x3800",
            },
            {
                "series": 'mediastack_backup_last_success_timestamp_seconds{job="node-exporter",host="nas"}',
                "values": "100000x3800",
            },
        ],
        "31h10m",
        {**HOST, "severity": "critical"},
    ),
    "BackupCheckFailed": (
        [{"series": 'mediastack_backup_check_last_run_success{job="node-exporter",host="nas"}', "values": "0x10"}],
        [{"series": 'mediastack_backup_check_last_run_success{job="node-exporter",host="nas"}', "values": "1x10"}],
        "1m",
        {**HOST, "severity": "critical"},
    ),
    # The success criteria: no OOM kill, I/O wait under 10 %, internal latency under 50 ms, CPU under 70 % at peak.
    "HostCpuPeak": (  # 80 % busy: above the 70 % peak, below HostCpuHigh's 80 %; healthy 60 %
        [{"series": 'node_cpu_seconds_total{mode="idle",cpu="0",host="nas"}', "values": "0+6x60"}],
        [{"series": 'node_cpu_seconds_total{mode="idle",cpu="0",host="nas"}', "values": "0+12x60"}],
        "15m",
        {**HOST, "severity": "warning"},
    ),
    "HostIoWaitHigh": (  # 20 % of CPU time in iowait; healthy 5 %
        [{"series": 'node_cpu_seconds_total{mode="iowait",cpu="0",host="nas"}', "values": "0+6x60"}],
        [{"series": 'node_cpu_seconds_total{mode="iowait",cpu="0",host="nas"}', "values": "0+1.5x60"}],
        "20m",
        {**HOST, "severity": "warning"},
    ),
    "HostOomKill": (  # the kernel's counter steps once at 5m30s
        [{"series": 'node_vmstat_oom_kill{job="node-exporter",host="nas"}', "values": "3x10 4x10"}],
        [{"series": 'node_vmstat_oom_kill{job="node-exporter",host="nas"}', "values": "3x20"}],
        "6m",
        {"job": "node-exporter", **HOST, "severity": "critical"},
    ),
    "ContainerOomKilled": (
        [{"series": 'container_oom_events_total{name="immich-machine-learning",host="nas"}', "values": "0x10 1x10"}],
        [
            {"series": 'container_oom_events_total{name="immich-machine-learning",host="nas"}', "values": "0x20"},
            # the root cgroup (no container name) is HostOomKill's
            {"series": 'container_oom_events_total{name="",id="/",host="nas"}', "values": "0x10 1x10"},
        ],
        "6m",
        {"name": "immich-machine-learning", **HOST, "severity": "critical"},
    ),
    "ProbeLatencyHigh": (  # 120 ms per probe; healthy 10 ms
        [
            {
                "series": 'probe_duration_seconds{job="blackbox-health",instance="http://sonarr:8989/ping"}',
                "values": "0.12x40",
            }
        ],
        [
            {
                "series": 'probe_duration_seconds{job="blackbox-health",instance="http://sonarr:8989/ping"}',
                "values": "0.01x40",
            }
        ],
        "15m",
        {"job": "blackbox-health", "instance": "http://sonarr:8989/ping", "severity": "warning"},
    ),
}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    result = CliRunner().invoke(app, ["render", "--stack", "prod", "--project", str(ROOT), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "prometheus/rules/mediastack.yml"


def test_rules_pass_promtool_check(rules: Path) -> None:
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test(rules: Path) -> None:
    names = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert names == set(CASES)


def _unit_test_file(rules: Path, tmp_path: Path) -> Path:
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    stripped = tmp_path / "rules.yml"
    stripped.write_text(yaml.safe_dump(doc))
    tests: list[dict[str, Any]] = []
    for name, (bad, good, at, labels) in CASES.items():
        tests.append(
            {
                "interval": "30s",
                "input_series": bad,
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": labels}]}],
            }
        )
        tests.append(
            {
                "interval": "30s",
                "input_series": good,
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}],
            }
        )
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(stripped)], "evaluation_interval": "30s", "tests": tests}))
    return test_file


def test_every_alert_fires_when_it_should_and_only_then(rules: Path, tmp_path: Path) -> None:
    test_file = _unit_test_file(rules, tmp_path)
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_can_fail(rules: Path, tmp_path: Path) -> None:
    """A threshold moved past the bad series makes promtool report the alert as missing."""
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "HostMemoryHigh":
                rule["expr"] = "host:memory_used:ratio > 0.99"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc))
    test_file = _unit_test_file(broken, tmp_path)
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "HostMemoryHigh" in result.stdout + result.stderr


def test_thresholds_come_from_the_stack_config() -> None:
    from conftest import raw_config
    from mediastack.generate.files import alert_rules
    from mediastack.plan.loading import parse_stack_config
    from mediastack.plan.resolve import resolve

    cfg = raw_config("prod")
    cfg["alerting"] = {
        "thresholds": {
            "host_cpu_percent": 70,
            "api_p95_ms": 350,
            "host_cpu_peak_percent": 65,
            "host_iowait_percent": 12.5,
            "probe_latency_ms": 80,
        }
    }
    text = alert_rules(resolve(parse_stack_config(cfg, "prod"), "prod"))
    assert "host:cpu_busy:ratio5m > 0.7" in text and "p95_5m > 0.35" in text
    assert "host:cpu_busy:ratio5m > 0.65" in text and "host:cpu_iowait:ratio5m > 0.125" in text
    assert "[5m]) > 0.08" in text


def test_receivers_routing_and_inhibition_pass_amtool(tmp_path: Path) -> None:
    from mediastack.generate.files import alertmanager_config
    from mediastack.plan.loading import parse_stack_config
    from mediastack.plan.resolve import resolve

    cfg = with_smtp(
        "prod", webhook_urls=["https://hooks.example.org/alertmanager"], ntfy_url="https://ntfy.sh/media-alerts"
    )
    text = alertmanager_config(resolve(parse_stack_config(cfg, "prod"), "prod"))
    assert SMTP_PASSWORD not in text and "auth_password_file: /etc/alertmanager/smtp_password" in text
    doc = yaml.safe_load(text)
    assert [r["receiver"] for r in doc["route"]["routes"]] == ["critical", "notify"]
    assert doc["inhibit_rules"][0]["source_matchers"] == ['alertname="HostDown"']
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    (tmp_path / "smtp_password").write_text("x")
    config.write_text(text.replace("/etc/alertmanager/smtp_password", str(tmp_path / "smtp_password")))
    result = subprocess.run(
        [require_tool("amtool"), "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "- 3 receivers" in result.stdout


def test_smtp_password_reaches_alertmanager_only_as_a_secret() -> None:
    from conftest import containers, plan_config

    cfg = with_smtp("prod")
    result = plan_config(cfg, stack="mail")
    alertmanager = containers(result)["alertmanager"]
    # A read-only rootfs: the host step writes both files into the directory the container binds read-only.
    assert not alertmanager.get("uploads")
    assert {
        k: v
        for m in alertmanager["mounts"]
        if m["target"] == "/etc/alertmanager"
        for k, v in m.items()
        if k != "source"
    } == {"target": "/etc/alertmanager", "type": "bind", "readOnly": True}
    # The password in a secret step of its own; the other files stay readable.
    files = next(r for r in result.resources if r.name.endswith("-secret-files"))
    assert files.inputs["create"] == "[secret]"
    from mediastack.generate.files import alertmanager_config
    from mediastack.plan.loading import parse_stack_config
    from mediastack.plan.resolve import resolve

    assert "auth_password_file" in alertmanager_config(resolve(parse_stack_config(cfg, "mail"), "mail"))
    import json

    assert SMTP_PASSWORD not in json.dumps(result.to_json())
