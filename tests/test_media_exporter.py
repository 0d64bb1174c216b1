"""The media exporter against local servers that answer in Jellyfin's and Tdarr's documented shapes.

Loopback only; every server is bounded (timeouts, a fixed number of polls).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from conftest import ROOT
from fake_apps import loopback

sys.path.insert(0, str(ROOT / "images/media-exporter"))
from media_exporter import MediaExporter

TASKS = [
    {
        "Name": "Clean Cache Directory",
        "State": "Idle",
        "Key": "DeleteCacheFiles",
        "LastExecutionResult": {
            "StartTimeUtc": "2026-11-24T02:00:00.0000000Z",
            "EndTimeUtc": "2026-11-24T02:00:01.0000000Z",
            "Status": "Completed",
            "Key": "DeleteCacheFiles",
        },
    },
    {
        "Name": "Scan Media Library",
        "State": "Running",
        "CurrentProgressPercentage": 42.5,
        "Key": "RefreshLibrary",
        "Category": "Library",
        "LastExecutionResult": {
            "StartTimeUtc": "2026-11-24T03:00:00.1234567Z",
            "EndTimeUtc": "2026-11-24T03:07:30.1234567Z",
            "Status": "Completed",
            "Name": "Scan Media Library",
            "Key": "RefreshLibrary",
        },
    },
]
SESSIONS = [
    {"Id": "a", "UserName": "alice", "TranscodingInfo": {"VideoCodec": "h264", "IsVideoDirect": False}},
    {"Id": "b", "UserName": "bob", "PlayState": {"PlayMethod": "DirectPlay"}},
    {"Id": "c", "UserName": "carol", "TranscodingInfo": {"AudioCodec": "aac"}},
]
TDARR_STATS = [
    {
        "_id": "statistics",
        "totalFileCount": 1200,
        "table1Count": 17,
        "table2Count": 950,
        "table3Count": 4,
        "table4Count": 0,
    }
]


class Behaviour:
    """What the stand-in answers; tests change it between polls."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Callable[[str], Any] = lambda path: {}
        self.delay = 0.0
        self.raw: bytes | None = None
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []


@contextmanager
def stand_in(behaviour: Behaviour) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            behaviour.requests.append((self.command, self.path, dict(self.headers), body))
            time.sleep(behaviour.delay)
            payload = behaviour.raw if behaviour.raw is not None else json.dumps(behaviour.body(self.path)).encode()
            try:
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (timeout test)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    with loopback(Handler) as url:
        yield url


def jellyfin_api(path: str) -> Any:
    return {"/ScheduledTasks": TASKS, "/Sessions": SESSIONS}.get(path.split("?")[0], {})


def value(exporter: MediaExporter, name: str, **labels: str) -> float | None:
    return exporter.registry.get_sample_value(name, labels or None)


def test_library_scan_and_transcodes_from_jellyfin() -> None:
    behaviour = Behaviour()
    behaviour.body = jellyfin_api
    with stand_in(behaviour) as url:
        exporter = MediaExporter(url, "k3y", None, timeout=2)
        exporter.poll_once()
    assert value(exporter, "media_exporter_source_up", source="jellyfin") == 1
    assert value(exporter, "media_scan_duration_seconds") == pytest.approx(450.0)
    assert value(exporter, "media_scan_last_success") == 1
    assert value(exporter, "media_scan_running") == 1
    assert value(exporter, "media_scan_progress_ratio") == pytest.approx(0.425)
    assert value(exporter, "transcoding_active", source="jellyfin") == 2
    method, path, headers, _ = behaviour.requests[0]
    assert (method, path) == ("GET", "/ScheduledTasks")
    assert headers["Authorization"] == 'MediaBrowser Token="k3y"'


def test_failed_scan_is_reported() -> None:
    failed = json.loads(json.dumps(TASKS))
    failed[1]["State"] = "Idle"
    failed[1]["LastExecutionResult"]["Status"] = "Failed"
    behaviour = Behaviour()
    behaviour.body = lambda path: failed if path.startswith("/ScheduledTasks") else []
    with stand_in(behaviour) as url:
        exporter = MediaExporter(url, None, None, timeout=2)
        exporter.poll_once()
    assert value(exporter, "media_scan_last_success") == 0
    assert value(exporter, "media_scan_running") == 0 and value(exporter, "media_scan_progress_ratio") == 0


def test_tdarr_queue() -> None:
    behaviour = Behaviour()
    behaviour.body = lambda path: TDARR_STATS
    with stand_in(behaviour) as url:
        exporter = MediaExporter(None, None, url, timeout=2)
        exporter.poll_once()
    assert value(exporter, "transcoding_queue_depth", source="tdarr") == 17
    assert value(exporter, "tdarr_files", status="failed") == 4
    method, path, _, body = behaviour.requests[0]
    assert (method, path) == ("POST", "/api/v2/cruddb")
    assert json.loads(body) == {"data": {"collection": "StatisticsJSONDB", "mode": "getAll", "obj": {}}}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda b: setattr(b, "status", 500), "http_500"),
        (lambda b: setattr(b, "status", 401), "http_401"),
        (lambda b: setattr(b, "raw", b"<html>not json</html>"), "bad_json"),
        (lambda b: setattr(b, "body", lambda path: {"unexpected": True}), "bad_shape"),
        (lambda b: setattr(b, "body", lambda path: [{"Key": "Other"}]), "no_library_scan_task"),
        (lambda b: setattr(b, "delay", 1.5), "timeout"),
    ],
)
def test_failures_are_metrics_and_the_exporter_keeps_serving(setup, reason: str) -> None:
    behaviour = Behaviour()
    behaviour.body = jellyfin_api
    with stand_in(behaviour) as url:
        exporter = MediaExporter(url, None, None, timeout=0.5)
        exporter.poll_once()
        assert value(exporter, "media_exporter_source_up", source="jellyfin") == 1
        setup(behaviour)
        exporter.poll_once()
        assert value(exporter, "media_exporter_source_up", source="jellyfin") == 0
        assert value(exporter, "media_exporter_errors_total", source="jellyfin", reason=reason) == 1
        # the last good values stay, and the next good poll recovers
        assert value(exporter, "media_scan_duration_seconds") == pytest.approx(450.0)
        behaviour.status, behaviour.raw, behaviour.delay, behaviour.body = 200, None, 0.0, jellyfin_api
        exporter.poll_once()
        assert value(exporter, "media_exporter_source_up", source="jellyfin") == 1


def test_unreachable_source() -> None:
    exporter = MediaExporter(None, None, "http://127.0.0.1:9", timeout=0.5)  # discard port: nothing listens
    exporter.poll_once()
    assert value(exporter, "media_exporter_source_up", source="tdarr") == 0
    assert value(exporter, "media_exporter_errors_total", source="tdarr", reason="unreachable") == 1


def test_metrics_endpoint_serves_while_a_source_is_down() -> None:
    behaviour = Behaviour()
    behaviour.status = 503
    stop = threading.Event()
    with stand_in(behaviour) as url:
        exporter = MediaExporter(url, None, url, timeout=0.5)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        runner = threading.Thread(target=exporter.run, args=(port, 0.2, stop), daemon=True)
        runner.start()
        text = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 'media_exporter_source_up{source="tdarr"} 0.0' not in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.1)
        stop.set()
        runner.join(5)
    assert 'media_exporter_source_up{source="jellyfin"} 0.0' in text
    assert 'media_exporter_source_up{source="tdarr"} 0.0' in text


def test_the_api_key_comes_from_the_file_its_variable_names(tmp_path, monkeypatch) -> None:
    from media_exporter import secret_from_env

    (tmp_path / "key").write_text("0123abcd\n")
    monkeypatch.setenv("JELLYFIN_API_KEY", "from-env")
    assert secret_from_env("JELLYFIN_API_KEY") == "from-env"
    monkeypatch.setenv("JELLYFIN_API_KEY_FILE", str(tmp_path / "key"))
    assert secret_from_env("JELLYFIN_API_KEY") == "0123abcd"  # the file wins, its newline stripped
