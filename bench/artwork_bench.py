"""Image requests straight to a stand-in Jellyfin against the same through the nginx artwork cache.

    .venv/bin/python bench/artwork_bench.py [--requests 3000] [--concurrency 16] [--images 300] [--resize-ms 40]

The stand-in answers every image after `resize-ms` of work (a resize: CPU spent in a hash loop, so the
stand-in saturates like the real thing) from a thread pool. Requests follow a skewed popularity (a
library page asks for the same posters again and again). The cache runs the config `mediastack render`
writes for prod, with only its paths moved into a sandbox and its upstream pointed at the stand-in.
Everything is on loopback and bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stand_in(resize_ms: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            end = time.perf_counter() + resize_ms / 1000
            digest = self.path.encode()
            while time.perf_counter() < end:  # CPU, like a resize
                digest = hashlib.sha256(digest).digest()
            body = digest * 512  # 16 KiB, a small poster
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_cache(upstream_port: int, sandbox: Path) -> tuple[subprocess.Popen[str], int]:
    from mediastack.generate.files import artwork_cache_config
    from mediastack.plan.loading import decode, parse_stack_config
    from mediastack.plan.resolve import resolve
    from mediastack_cli.offline import read_stack

    files = read_stack(ROOT, "prod")
    raw = {k.split(":", 1)[1]: decode(v) for k, v in files.config.items()}
    conf = artwork_cache_config(resolve(parse_stack_config(raw, "prod"), "prod"))
    for path in ("/var/cache/nginx", "/var/run", "/tmp"):
        (sandbox / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    conf = re.sub(r"(?<=\s)(/var/cache/nginx|/var/run|/tmp)(?=[/\s;])", lambda m: f"{sandbox}{m.group(1)}", conf)
    port = free_port()
    conf = conf.replace("set $jellyfin http://jellyfin:8096;", f"set $jellyfin http://127.0.0.1:{upstream_port};")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = "user root;\n" + conf
    (sandbox / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen(
        [nginx, "-p", str(sandbox), "-c", str(sandbox / "nginx.conf"), "-e", "stderr", "-g", "daemon off;"], text=True
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return process, port


async def load(base: str, paths: list[str], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                start = time.perf_counter()
                r = await c.get(path)
                r.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start


def summary(name: str, latencies: list[float], seconds: float) -> str:
    q = statistics.quantiles(latencies, n=100)
    return f"{name:<28}{q[49]:>9.1f}{q[94]:>9.1f}{len(latencies) / seconds:>10.1f}{len(latencies):>10}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--resize-ms", type=float, default=40.0)
    args = parser.parse_args()
    rng = random.Random(7)
    images = [f"/Items/{i:08x}/Images/Primary?fillWidth=300&quality=90&tag={i:04x}" for i in range(args.images)]
    weights = [1 / (i + 1) for i in range(args.images)]  # popular posters are asked for again and again
    paths = rng.choices(images, weights=weights, k=args.requests)

    upstream = stand_in(args.resize_ms)
    sandbox = Path(tempfile.mkdtemp(prefix="mediastack-artwork-bench-"))
    cache, port = start_cache(upstream.server_address[1], sandbox)
    try:
        direct = asyncio.run(load(f"http://127.0.0.1:{upstream.server_address[1]}", paths, args.concurrency))
        cold = asyncio.run(load(f"http://127.0.0.1:{port}", paths, args.concurrency))
        warm = asyncio.run(load(f"http://127.0.0.1:{port}", paths, args.concurrency))
    finally:
        cache.terminate()
        cache.wait(timeout=10)
        upstream.shutdown()
        shutil.rmtree(sandbox, ignore_errors=True)
    print(
        f"{args.requests} image requests over {args.images} images (skewed), {args.concurrency} in flight, "
        f"stand-in resize {args.resize_ms:g} ms"
    )
    print(f"{'':<28}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>10}{'requests':>10}")
    print(summary("straight to the stand-in", *direct))
    print(summary("through the cache, cold", *cold))
    print(summary("through the cache, warm", *warm))


if __name__ == "__main__":
    main()
