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
from dataclasses import dataclass, field

import httpx

from components.config import StackConfig


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
