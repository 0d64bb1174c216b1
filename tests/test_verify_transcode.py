"""`mediastack verify`'s time to the first transcoded segment, against a local stand-in of Jellyfin's HLS API.

The stand-in answers as Jellyfin 10.11.2 does (jellyfin/jellyfin, Jellyfin.Api/Controllers/DynamicHlsController.cs,
Jellyfin.Api/Helpers/DynamicHlsHelper.cs, src/Jellyfin.MediaEncoding.Hls/Playlist/DynamicHlsPlaylistGenerator.cs):
master.m3u8 needs MediaSourceId and points at `main.m3u8?<same query>`; main.m3u8 lists
`hls1/main/<n>.ts?<query>&runtimeTicks=..&actualSegmentLengthTicks=..`; the first segment comes once "ffmpeg" has
written it (a delay here). Loopback only, a bounded number of runs.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml
from typer.testing import CliRunner

from conftest import ROOT
from fake_apps import loopback
from mediastack_cli.main import app

runner = CliRunner()
ITEM = "7b0e9c6a1f2d4e3b8a9c0d1e2f3a4b5c"
SOURCE = "f00dfeedf00dfeedf00dfeedf00dfeed"
KEY = "k3y"


@contextmanager
def jellyfin(
    segment_delay_ms: float, videos: bool = True, broken_master: bool = False
) -> Iterator[tuple[str, list[tuple[str, str, dict]]]]:
    seen: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self) -> None:
            url = urlsplit(self.path)
            seen.append(("DELETE", url.path, parse_qs(url.query)))
            self._send(204, b"")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            seen.append(("GET", url.path, query))
            if url.path in ("/health", "/System/Info/Public", "/web/index.html"):
                self._send(200, b"{}")  # the request-latency endpoints: not what these tests are about
                return
            if self.headers.get("Authorization") != f'MediaBrowser Token="{KEY}"':
                self._send(401, b"")
                return
            if url.path == "/Items":
                items = [{"Id": ITEM, "Name": "Test Pattern", "MediaSources": [{"Id": SOURCE}]}] if videos else []
                if query.get("Ids", [ITEM]) != [ITEM]:
                    items = []
                self._send(200, json.dumps({"Items": items, "TotalRecordCount": len(items)}).encode())
            elif url.path == f"/Videos/{ITEM}/master.m3u8":
                if broken_master or query.get("MediaSourceId") != [SOURCE]:
                    self._send(400, b"MediaSourceId is required")
                    return
                body = f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=4128000\nmain.m3u8?{url.query}\n"
                self._send(200, body.encode(), "application/x-mpegURL")
            elif url.path == f"/Videos/{ITEM}/main.m3u8":
                body = (
                    "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n"
                    "#EXT-X-MEDIA-SEQUENCE:0\n"
                    f"#EXTINF:6.000000, nodesc\nhls1/main/0.ts?{url.query}&runtimeTicks=0"
                    "&actualSegmentLengthTicks=60000000\n"
                    f"#EXTINF:6.000000, nodesc\nhls1/main/1.ts?{url.query}&runtimeTicks=60000000"
                    "&actualSegmentLengthTicks=60000000\n#EXT-X-ENDLIST\n"
                )
                self._send(200, body.encode(), "application/x-mpegURL")
            elif url.path == f"/Videos/{ITEM}/hls1/main/0.ts":
                time.sleep(segment_delay_ms / 1000)  # ffmpeg starting and writing the first segment
                self._send(200, b"\x47" * 188 * 64, "video/mp2t")
            else:
                self._send(404, b"")

        def log_message(self, *args: object) -> None:
            pass

    with loopback(Handler) as url:
        yield url, seen


def project(tmp_path: Path, slo_ms: float | None = None, key: bool = True) -> str:
    target = tmp_path / "project"
    target.mkdir(exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", target)
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    if key:
        doc["config"]["mediastack:jellyfin_api_key"] = KEY
    # Loose request SLOs: a loaded test machine must not fail these tests for the endpoints they do not study.
    slo: dict[str, float] = {f"{e}_p95_ms": 30_000 for e in ("health", "api", "search", "page")}
    if slo_ms is not None:
        slo["transcode_start_ms"] = slo_ms
    doc["config"]["mediastack:slo"] = slo
    (target / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return str(target)


# Keep the request-latency part small: the transcode start is what these tests are about.
ARGS = ["--requests", "4", "--concurrency", "2", "--warmup", "0", "--duration", "20", "--transcode-runs", "2"]


def verify(project_dir: str, url: str, *extra: str):
    return runner.invoke(app, ["verify", "--stack", "dev", "--project", project_dir, "--base-url", url, *ARGS, *extra])


def test_a_quick_first_segment_meets_the_2s_slo(tmp_path: Path) -> None:
    with jellyfin(segment_delay_ms=150) as (url, seen):
        result = verify(project(tmp_path), url)
    assert result.exit_code == 0, result.output
    assert "transcode start of Test Pattern:" in result.output
    assert "SLO 2000 ms: ok" in result.output
    segments = [q for method, path, q in seen if path.endswith("/hls1/main/0.ts")]
    assert len(segments) == 2  # one per run, each a new play session
    assert len({q["PlaySessionId"][0] for q in segments}) == 2
    first = segments[0]
    # A real transcode was asked for, and the playlists' own query (with Jellyfin's segment ticks) was followed.
    assert first["VideoCodec"] == ["h264"] and first["AllowVideoStreamCopy"] == ["false"]
    assert first["runtimeTicks"] == ["0"] and first["MediaSourceId"] == [SOURCE]
    stopped = [q for method, path, q in seen if method == "DELETE" and path == "/Videos/ActiveEncodings"]
    assert {q["playSessionId"][0] for q in stopped} == {q["PlaySessionId"][0] for q in segments}
    assert all(q["deviceId"] == ["mediastack-verify"] for q in stopped)


def test_a_slow_first_segment_misses_and_exits_1(tmp_path: Path) -> None:
    with jellyfin(segment_delay_ms=700) as (url, _):
        result = verify(project(tmp_path, slo_ms=400), url)
    assert result.exit_code == 1
    assert "SLO 400 ms: missed" in result.output
    assert "SLO missed: transcode" in result.output
    worst = float(result.output.split("worst ")[1].split(" ms")[0])
    assert 700 <= worst < 5000


def test_a_named_item_an_unknown_one_and_a_refused_transcode(tmp_path: Path) -> None:
    with jellyfin(segment_delay_ms=10) as (url, seen):
        result = verify(project(tmp_path), url, "--transcode-item", ITEM)
    assert result.exit_code == 0, result.output  # the stand-in finds it by id
    assert any(path == "/Items" and q.get("Ids") == [ITEM] for _, path, q in seen)
    with jellyfin(segment_delay_ms=10) as (url, _):
        result = verify(project(tmp_path), url, "--transcode-item", "0" * 32)
    assert result.exit_code == 0, result.output
    assert f"transcode start not measured: no video {'0' * 32}" in result.output
    with jellyfin(segment_delay_ms=10, broken_master=True) as (url, _):
        result = verify(project(tmp_path), url)
    assert result.exit_code == 1
    assert f"transcode errors, e.g.: HTTP 400 at /Videos/{ITEM}/master.m3u8" in result.output
    assert "SLO missed: transcode" in result.output
    with jellyfin(segment_delay_ms=10) as (url, _):
        # Without the API key Jellyfin answers 401: nothing to measure, said so, no failure.
        result = verify(project(tmp_path, key=False), url)
    assert "transcode start not measured: set mediastack:jellyfin_api_key" in result.output


def test_an_empty_library_is_reported_not_failed(tmp_path: Path) -> None:
    with jellyfin(segment_delay_ms=10, videos=False) as (url, _):
        result = verify(project(tmp_path), url)
    assert result.exit_code == 0, result.output
    assert "transcode start not measured: no video in the library" in result.output
