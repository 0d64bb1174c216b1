"""Prometheus' recording rules and alerts for the stack, with its thresholds (checked by promtool in the tests)."""

from __future__ import annotations

from mediastack.host.backup import backup_alerts
from mediastack.plan.resolved import ResolvedStack
from mediastack.quoting import yaml_document


def alert_rules(stack: ResolvedStack) -> str:
    """Recording rules for the queries that repeat, and the alerts, with the stack's thresholds."""
    t = stack.config.alerting.thresholds
    enabled = stack.enabled
    recording = [
        {
            "record": "host:cpu_busy:ratio5m",
            "expr": '1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
        },
        {
            "record": "host:cpu_iowait:ratio5m",
            "expr": 'avg by (host) (rate(node_cpu_seconds_total{mode="iowait"}[5m]))',
        },
        {
            "record": "host:memory_used:ratio",
            "expr": "1 - sum by (host) (node_memory_MemAvailable_bytes) / sum by (host) (node_memory_MemTotal_bytes)",
        },
        {
            "record": "host:filesystem_used:ratio",
            "expr": '1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"}'
            ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"}',
        },
        {
            "record": "container:memory_used:ratio",
            "expr": 'container_memory_working_set_bytes{name!=""} / (container_spec_memory_limit_bytes{name!=""} > 0)',
        },
        {
            "record": "service:request_duration_seconds:p95_5m",
            "expr": "histogram_quantile(0.95, sum by (le, service) "
            "(rate(traefik_service_request_duration_seconds_bucket[5m])))",
        },
    ]

    def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, object]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description},
        }

    alerts = [
        alert(
            "HostDown",
            'up{job="node-exporter"} == 0',
            "2m",
            "critical",
            "Host {{ $labels.host }} is down",
            "node-exporter on {{ $labels.host }} has not answered for 2 minutes.",
        ),
        alert(
            "ServiceDown",
            'up{job!~"node-exporter|blackbox-health"} == 0',
            "5m",
            "critical",
            "{{ $labels.job }} is not answering its scrape",
            "Prometheus could not scrape {{ $labels.instance }} for 5 minutes.",
        ),
        alert(
            "ProbeFailed",
            'probe_success{job="blackbox-health"} == 0',
            "5m",
            "critical",
            "Health check failing: {{ $labels.instance }}",
            "The blackbox probe of {{ $labels.instance }} has failed for 5 minutes.",
        ),
        alert(
            "ProbeLatencyHigh",
            f'avg_over_time(probe_duration_seconds{{job="blackbox-health"}}[5m]) > {t.probe_latency_ms / 1000:g}',
            "10m",
            "warning",
            "Internal latency to {{ $labels.instance }} above " + f"{t.probe_latency_ms:g} ms",
            "The health probe from inside the stack averages {{ $value | humanizeDuration }} for 10 minutes.",
        ),
        alert(
            "HostCpuHigh",
            f"host:cpu_busy:ratio5m > {t.host_cpu_percent / 100:g}",
            "15m",
            "warning",
            "CPU on {{ $labels.host }} above " + f"{t.host_cpu_percent:g}%",
            "{{ $value | humanizePercentage }} busy for 15 minutes.",
        ),
        alert(
            "HostCpuPeak",
            f"host:cpu_busy:ratio5m > {t.host_cpu_peak_percent / 100:g}",
            "5m",
            "warning",
            "CPU on {{ $labels.host }} peaked above " + f"{t.host_cpu_peak_percent:g}%",
            "{{ $value | humanizePercentage }} busy for 5 minutes: the headroom for a transcode is going.",
        ),
        alert(
            "HostIoWaitHigh",
            f"host:cpu_iowait:ratio5m > {t.host_iowait_percent / 100:g}",
            "10m",
            "warning",
            "I/O wait on {{ $labels.host }} above " + f"{t.host_iowait_percent:g}%",
            "{{ $value | humanizePercentage }} of CPU time waits on disks for 10 minutes.",
        ),
        alert(
            # Any OOM kill on the host (the kernel's own counter, /proc/vmstat), named or not by cAdvisor.
            "HostOomKill",
            "increase(node_vmstat_oom_kill[5m]) > 0",
            "0m",
            "critical",
            "The kernel OOM-killed a process on {{ $labels.host }}",
            "A memory limit or the host's memory was exhausted; ContainerOomKilled names the container when cAdvisor "
            "sees it.",
        ),
        alert(
            "HostMemoryHigh",
            f"host:memory_used:ratio > {t.host_memory_percent / 100:g}",
            "10m",
            "warning",
            "Memory on {{ $labels.host }} above " + f"{t.host_memory_percent:g}%",
            "{{ $value | humanizePercentage }} in use for 10 minutes.",
        ),
        alert(
            "HostDiskFull",
            f"host:filesystem_used:ratio > {t.host_disk_percent / 100:g}",
            "10m",
            "critical",
            "{{ $labels.mountpoint }} on {{ $labels.host }} above " + f"{t.host_disk_percent:g}%",
            "{{ $value | humanizePercentage }} used.",
        ),
        alert(
            "ContainerRestartLoop",
            f'changes(container_start_time_seconds{{name!=""}}[15m]) >= {t.restarts_per_15m}',
            "0m",
            "warning",
            "{{ $labels.name }} is restarting in a loop",
            "{{ $value }} starts in the last 15 minutes.",
        ),
        alert(
            "ContainerOomKilled",
            'increase(container_oom_events_total{name!=""}[5m]) > 0',
            "0m",
            "critical",
            "{{ $labels.name }} was OOM-killed",
            "It hit its memory limit; raise services.<name>.resources.memory or find the leak.",
        ),
        alert(
            "ContainerNearMemoryLimit",
            f"container:memory_used:ratio > {t.container_memory_percent / 100:g}",
            "10m",
            "warning",
            "{{ $labels.name }} is near its memory limit",
            "{{ $value | humanizePercentage }} of its limit for 10 minutes; the next step is an OOM kill.",
        ),
    ]
    if "traefik" in enabled:
        alerts += [
            alert(
                "ApiLatencyHigh",
                f"service:request_duration_seconds:p95_5m > {t.api_p95_ms / 1000:g}",
                "10m",
                "warning",
                "p95 latency of {{ $labels.service }} above " + f"{t.api_p95_ms:g} ms",
                "p95 is {{ $value | humanizeDuration }} for 10 minutes.",
            ),
            alert(
                "CertificateExpiring",
                f"(traefik_tls_certs_not_after - time()) / 86400 < {t.certificate_days}",
                "1h",
                "warning",
                "Certificate for {{ $labels.cn }} expires soon",
                "It expires in {{ $value | humanize }} days; Traefik renews at 30 days, so renewal is failing.",
            ),
        ]
    if "media-exporter" in enabled:
        alerts += [
            alert(
                "LibraryScanSlow",
                f"media_scan_duration_seconds > {t.library_scan_seconds:g}",
                "0m",
                "warning",
                "The last Jellyfin library scan took {{ $value | humanizeDuration }}",
                f"Above the {t.library_scan_seconds:g} s target: check the cache_root disk, metadata providers "
                "and the real-time monitor on network shares.",
            ),
            alert(
                "LibraryScanFailed",
                "media_scan_last_success == 0",
                "0m",
                "warning",
                "The last Jellyfin library scan did not complete",
                "Jellyfin: Dashboard, Scheduled Tasks, logs.",
            ),
            alert(
                "TranscodeQueueBackedUp",
                f"transcoding_queue_depth > {t.transcode_queue}",
                "30m",
                "warning",
                "{{ $value }} files waiting for {{ $labels.source }}",
                "The queue has not drained for 30 minutes: are the Tdarr nodes up, is the GPU used?",
            ),
            alert(
                "MediaSourceUnreachable",
                "media_exporter_source_up == 0",
                "15m",
                "warning",
                "The media exporter cannot read {{ $labels.source }}",
                "Check the API key (Jellyfin) and that the service answers.",
            ),
        ]
    if stack.config.backups.repository and "node-exporter" in enabled:
        alerts += backup_alerts(stack.config)  # node-exporter exports the backup tool's textfile
    return yaml_document(
        {
            "groups": [
                {"name": "mediastack-recording", "interval": "30s", "rules": recording},
                {"name": "mediastack-alerts", "rules": alerts},
            ]
        }
    )
