"""`mediastack verify`: a bounded load test of the running stack against its SLOs.

Async (httpx), a warm-up that is not measured, then at most `requests` requests per endpoint with
`concurrency` in flight, stopped early at `duration` seconds. Per endpoint: p50/p95/p99, requests per
second, errors; an endpoint misses its SLO when its p95 is above the target or its error share above
`max_error_ratio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from dataclasses import dataclass, field

import httpx

from mediastack.model.config import StackConfig


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    target_ms: float
    auth: bool = False


@dataclass
class Result:
    endpoint: Endpoint
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors

    def quantile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q * 100) - 1]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def passed(self, max_error_ratio: float) -> bool:
        if not self.latencies_ms:
            return False
        return self.quantile(0.95) <= self.endpoint.target_ms and self.errors <= max_error_ratio * self.requests


def endpoints(config: StackConfig) -> list[Endpoint]:
    slo = config.slo
    found = [
        Endpoint("health", "/health", slo.health_p95_ms),
        Endpoint("api", "/System/Info/Public", slo.api_p95_ms),
        Endpoint("page", "/web/index.html", slo.page_p95_ms),
    ]
    if config.jellyfin_api_key:
        found.insert(
            2, Endpoint("search", "/Items?searchTerm=the&Recursive=true&Limit=20", slo.search_p95_ms, auth=True)
        )
    return found


async def _measure(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    requests: int,
    concurrency: int,
    deadline: float,
    headers: dict[str, str],
) -> Result:
    result = Result(endpoint)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            try:
                response = await client.get(endpoint.path, headers=headers if endpoint.auth else None)
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code >= 400:
                    result.errors += 1
                    if len(result.error_samples) < 3:
                        result.error_samples.append(f"HTTP {response.status_code}")
                else:
                    result.latencies_ms.append(elapsed)
            except httpx.HTTPError as error:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(type(error).__name__)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.monotonic() - start
    return result


async def run(
    base_url: str,
    config: StackConfig,
    requests: int = 200,
    concurrency: int = 8,
    duration_s: float = 60.0,
    warmup: int = 5,
    timeout_s: float = 10.0,
    verify_tls: bool = True,
) -> list[Result]:
    headers = {"Authorization": f'MediaBrowser Token="{config.jellyfin_api_key}"'} if config.jellyfin_api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"), timeout=timeout_s, limits=limits, verify=verify_tls, follow_redirects=True
    ) as client:
        results = []
        deadline = time.monotonic() + duration_s
        for endpoint in endpoints(config):
            for _ in range(warmup):  # connections, caches, JIT: not what users wait for in steady state
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(endpoint.path, headers=headers if endpoint.auth else None)
            results.append(await _measure(client, endpoint, requests, concurrency, deadline, headers))
        return results


# -- time to the first transcoded segment ------------------------------------------------------------
#
# What a client does to play a video it cannot direct-play (jellyfin/jellyfin at v10.11.2): GET
# /Videos/{id}/master.m3u8 (MediaSourceId required; Jellyfin.Api/Controllers/DynamicHlsController.cs), whose
# variant line is `main.m3u8?<the same query>` (Jellyfin.Api/Helpers/DynamicHlsHelper.cs); GET that, whose
# segment lines are `hls1/main/<n>.<ext>?<query>&runtimeTicks=..&actualSegmentLengthTicks=..`
# (src/Jellyfin.MediaEncoding.Hls/Playlist/DynamicHlsPlaylistGenerator.cs); GET the first segment, which
# Jellyfin answers once ffmpeg has written it. DELETE /Videos/ActiveEncodings (deviceId, playSessionId;
# HlsSegmentController.cs) stops the transcode afterwards.

VERIFY_DEVICE = "mediastack-verify"
# Copying nothing forces a real transcode: H.264/AAC at a bitrate below any source's, in MPEG-TS segments.
TRANSCODE_PARAMS = {
    "VideoCodec": "h264",
    "AudioCodec": "aac",
    "SegmentContainer": "ts",
    "AllowVideoStreamCopy": "false",
    "AllowAudioStreamCopy": "false",
    "VideoBitrate": "4000000",
    "AudioBitrate": "128000",
    "MaxWidth": "1280",
}


@dataclass
class TranscodeResult:
    target_ms: float
    item: str = ""
    times_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_measured: str = ""  # why nothing was measured (no API key, no video)

    @property
    def measured(self) -> bool:
        return not self.not_measured

    @property
    def worst_ms(self) -> float:
        return max(self.times_ms) if self.times_ms else float("nan")

    def passed(self) -> bool:
        return bool(self.times_ms) and not self.errors and self.worst_ms <= self.target_ms


def _first_uri(playlist: str) -> str | None:
    return next((line.strip() for line in playlist.splitlines() if line.strip() and not line.startswith("#")), None)


async def _find_video(client: httpx.AsyncClient, headers: dict[str, str], item_id: str | None) -> dict | None:
    params = {"Recursive": "true", "Fields": "MediaSources", "Limit": "1"}
    if item_id:
        params["Ids"] = item_id
    else:
        params.update({"IncludeItemTypes": "Movie,Episode", "MediaTypes": "Video", "SortBy": "SortName"})
    response = await client.get("/Items", params=params, headers=headers)
    response.raise_for_status()
    items = response.json().get("Items") or []
    return items[0] if items else None


async def _one_start(client: httpx.AsyncClient, headers: dict[str, str], item: dict, session: str) -> float:
    sources = item.get("MediaSources") or [{}]
    params = {
        **TRANSCODE_PARAMS,
        "MediaSourceId": str(sources[0].get("Id") or item["Id"]),
        "DeviceId": VERIFY_DEVICE,
        "PlaySessionId": session,
    }
    start = time.perf_counter()
    master = await client.get(f"/Videos/{item['Id']}/master.m3u8", params=params, headers=headers)
    master.raise_for_status()
    variant = _first_uri(master.text)
    if variant is None:
        raise ValueError("master.m3u8 lists no playlist")
    main = await client.get(master.url.join(variant), headers=headers)
    main.raise_for_status()
    segment = _first_uri(main.text)
    if segment is None:
        raise ValueError("main.m3u8 lists no segment")
    first = await client.get(main.url.join(segment), headers=headers)
    first.raise_for_status()
    if not first.content:
        raise ValueError("the first segment is empty")
    return (time.perf_counter() - start) * 1000


async def transcode_start(
    base_url: str,
    config: StackConfig,
    item_id: str | None = None,
    runs: int = 3,
    timeout_s: float = 60.0,
    verify_tls: bool = True,
) -> TranscodeResult:
    """Play a video through Jellyfin's HLS transcoding `runs` times; time each start to its first segment."""
    result = TranscodeResult(config.slo.transcode_start_ms)
    if not config.jellyfin_api_key:
        result.not_measured = "set mediastack:jellyfin_api_key (a secret) to include it"
        return result
    headers = {"Authorization": f'MediaBrowser Token="{config.jellyfin_api_key}"'}
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"), timeout=timeout_s, verify=verify_tls, follow_redirects=True
    ) as client:
        try:
            item = await _find_video(client, headers, item_id)
        except (httpx.HTTPError, ValueError) as error:
            result.errors.append(f"finding a video: {_describe(error)}")
            return result
        if item is None:
            result.not_measured = f"no video {item_id or 'in the library'}; add one or pass --transcode-item ID"
            return result
        result.item = str(item.get("Name") or item["Id"])
        for _ in range(runs):
            session = uuid.uuid4().hex  # a new play session: a new transcode, not the previous one's segments
            try:
                result.times_ms.append(await _one_start(client, headers, item, session))
            except (httpx.HTTPError, ValueError, KeyError) as error:
                result.errors.append(_describe(error))
            finally:
                with contextlib.suppress(httpx.HTTPError):
                    await client.delete(
                        "/Videos/ActiveEncodings",
                        params={"deviceId": VERIFY_DEVICE, "playSessionId": session},
                        headers=headers,
                    )
    return result


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} at {error.request.url.path}"
    return str(error) if isinstance(error, (ValueError, KeyError)) else type(error).__name__
