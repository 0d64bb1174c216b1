"""mediastack's media exporter: the metrics no standard exporter gives.

- Jellyfin's scheduled tasks (GET /ScheduledTasks): the library scan's last duration and result, whether
  one is running and how far along it is.
- Jellyfin's sessions (GET /Sessions): live transcodes right now.
- Tdarr's statistics (POST /api/v2/cruddb, StatisticsJSONDB): files waiting to be transcoded, transcoded,
  failed.

A poller refreshes the values every POLL_SECONDS with bounded timeouts; /metrics always answers with the
last values. A source that fails (refused, timeout, HTTP error, unexpected JSON) is reported through
media_exporter_source_up{source}=0 and media_exporter_errors_total; the exporter keeps serving.

Environment: JELLYFIN_URL, JELLYFIN_API_KEY, TDARR_URL (each optional: an unset source is not polled),
PORT (9850), POLL_SECONDS (30), TIMEOUT_SECONDS (5). JELLYFIN_API_KEY_FILE names a file holding the key instead
(whitespace around it stripped), so the key need not be in the environment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

LOG = logging.getLogger("media_exporter")
LIBRARY_SCAN_KEY = "RefreshLibrary"


class SourceError(Exception):
    """A source answered badly or not at all; the message says how."""


def _parse_time(text: str) -> float:
    # Jellyfin writes .NET timestamps with 7 fractional digits: 2024-05-01T03:00:00.1234567Z
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text + "+00:00").timestamp()


class MediaExporter:
    def __init__(
        self,
        jellyfin_url: str | None,
        jellyfin_key: str | None,
        tdarr_url: str | None,
        timeout: float = 5.0,
        registry: CollectorRegistry | None = None,
    ):
        self.jellyfin_url = jellyfin_url.rstrip("/") if jellyfin_url else None
        self.jellyfin_key = jellyfin_key
        self.tdarr_url = tdarr_url.rstrip("/") if tdarr_url else None
        self.timeout = timeout
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.up = Gauge(
            "media_exporter_source_up", "1 when the last poll of the source succeeded.", ["source"], registry=r
        )
        self.errors = Counter("media_exporter_errors", "Failed polls of a source.", ["source", "reason"], registry=r)
        self.poll_seconds = Gauge(
            "media_exporter_poll_duration_seconds", "How long the last poll took.", ["source"], registry=r
        )
        self.scan_duration = Gauge(
            "media_scan_duration_seconds", "Duration of the last finished Jellyfin library scan.", registry=r
        )
        self.scan_success = Gauge("media_scan_last_success", "1 when the last library scan completed.", registry=r)
        self.scan_end = Gauge("media_scan_last_end_timestamp_seconds", "When the last library scan ended.", registry=r)
        self.scan_running = Gauge("media_scan_running", "1 while a library scan runs.", registry=r)
        self.scan_progress = Gauge("media_scan_progress_ratio", "Progress of the running library scan.", registry=r)
        self.transcodes = Gauge("transcoding_active", "Transcodes running now.", ["source"], registry=r)
        self.queue = Gauge("transcoding_queue_depth", "Files waiting to be transcoded.", ["source"], registry=r)
        self.tdarr_files = Gauge("tdarr_files", "Files by Tdarr transcode status.", ["status"], registry=r)

    # -- HTTP ------------------------------------------------------------------------------------------

    def _request(self, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers={"Accept": "application/json", **(headers or {})})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise SourceError(f"http_{error.code}") from None
        except (TimeoutError, OSError) as error:
            reason = "timeout" if "timed out" in str(error) else "unreachable"
            raise SourceError(reason) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise SourceError("bad_json") from None

    def _jellyfin(self, path: str) -> Any:
        assert self.jellyfin_url
        headers = {"Authorization": f'MediaBrowser Token="{self.jellyfin_key}"'} if self.jellyfin_key else {}
        return self._request(f"{self.jellyfin_url}{path}", headers=headers)

    # -- sources ---------------------------------------------------------------------------------------

    def poll_jellyfin(self) -> None:
        tasks = self._jellyfin("/ScheduledTasks")
        if not isinstance(tasks, list):
            raise SourceError("bad_shape")
        scan = next((t for t in tasks if isinstance(t, dict) and t.get("Key") == LIBRARY_SCAN_KEY), None)
        if scan is None:
            raise SourceError("no_library_scan_task")
        running = scan.get("State") == "Running"
        self.scan_running.set(1 if running else 0)
        self.scan_progress.set((scan.get("CurrentProgressPercentage") or 0) / 100 if running else 0)
        last = scan.get("LastExecutionResult")
        if isinstance(last, dict) and last.get("StartTimeUtc") and last.get("EndTimeUtc"):
            start, end = _parse_time(last["StartTimeUtc"]), _parse_time(last["EndTimeUtc"])
            self.scan_duration.set(max(end - start, 0))
            self.scan_end.set(end)
            self.scan_success.set(1 if last.get("Status") == "Completed" else 0)
        sessions = self._jellyfin("/Sessions")
        if not isinstance(sessions, list):
            raise SourceError("bad_shape")
        self.transcodes.labels("jellyfin").set(
            sum(1 for s in sessions if isinstance(s, dict) and s.get("TranscodingInfo"))
        )

    def poll_tdarr(self) -> None:
        assert self.tdarr_url
        stats = self._request(
            f"{self.tdarr_url}/api/v2/cruddb",
            body={"data": {"collection": "StatisticsJSONDB", "mode": "getAll", "obj": {}}},
        )
        if not isinstance(stats, list) or not stats or not isinstance(stats[0], dict):
            raise SourceError("bad_shape")
        s = stats[0]
        self.queue.labels("tdarr").set(float(s.get("table1Count", 0)))
        self.tdarr_files.labels("queued").set(float(s.get("table1Count", 0)))
        self.tdarr_files.labels("transcoded").set(float(s.get("table2Count", 0)))
        self.tdarr_files.labels("failed").set(float(s.get("table3Count", 0)))

    def poll_once(self) -> None:
        sources = {"jellyfin": (self.jellyfin_url, self.poll_jellyfin), "tdarr": (self.tdarr_url, self.poll_tdarr)}
        for name, (url, poll) in sources.items():
            if not url:
                continue
            start = time.monotonic()
            try:
                poll()
                self.up.labels(name).set(1)
            except SourceError as error:
                LOG.warning("%s: %s", name, error)
                self.up.labels(name).set(0)
                self.errors.labels(name, str(error)).inc()
            except Exception as error:
                LOG.exception("%s: unexpected answer", name)
                self.up.labels(name).set(0)
                self.errors.labels(name, type(error).__name__).inc()
            finally:
                self.poll_seconds.labels(name).set(time.monotonic() - start)

    def run(self, port: int, interval: float, stop: threading.Event) -> None:
        start_http_server(port, registry=self.registry)
        while not stop.is_set():
            self.poll_once()
            stop.wait(interval)


def secret_from_env(name: str) -> str | None:
    """NAME's value, or the content of the file NAME_FILE names (a file wins: it keeps the secret out of the
    container's environment, which anyone who can inspect the container reads)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get(name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    exporter = MediaExporter(
        os.environ.get("JELLYFIN_URL"),
        secret_from_env("JELLYFIN_API_KEY"),
        os.environ.get("TDARR_URL"),
        timeout=float(os.environ.get("TIMEOUT_SECONDS", "5")),
    )
    exporter.run(int(os.environ.get("PORT", "9850")), float(os.environ.get("POLL_SECONDS", "30")), threading.Event())


if __name__ == "__main__":
    main()
