"""The artwork cache: `nginx -t` on the rendered config, then a real nginx in front of a local stand-in."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from mediastack_cli.main import app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rendered() -> str:
    with tempfile.TemporaryDirectory() as out:
        result = CliRunner().invoke(app, ["render", "--stack", "prod", "--project", str(ROOT), "--out", out])
        assert result.exit_code == 0, result.output
        return (Path(out) / "artwork-cache/nginx.conf").read_text()


def _sandboxed(conf: str, root: Path) -> str:
    """The same config with its host paths under a sandbox directory."""
    paths = ("/var/cache/nginx", "/var/run", "/tmp")
    for path in paths:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return re.sub(r"(?<=\s)(/var/cache/nginx|/var/run|/tmp)(?=[/\s;])", lambda m: f"{root}{m.group(1)}", conf)


@pytest.fixture
def sandbox() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mediastack-nginx-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_rendered_config_passes_nginx_t(rendered: str, sandbox: Path) -> None:
    conf = sandbox / "nginx.conf"
    conf.write_text(_sandboxed(rendered, sandbox))
    result = subprocess.run(
        [require_tool("nginx"), "-t", "-p", str(sandbox), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_can_fail(sandbox: Path) -> None:
    conf = sandbox / "nginx.conf"
    conf.write_text("events {}\nhttp { server { listen 8080; proxy_cache nosuchzone; } }\n")
    result = subprocess.run(
        [require_tool("nginx"), "-t", "-p", str(sandbox), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0


class Upstream:
    """A stand-in Jellyfin that takes RESIZE_S per image, as a resize costs, and counts what reaches it."""

    RESIZE_S = 0.05

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.status = 200
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.hits[self.path] += 1
                time.sleep(Upstream.RESIZE_S)
                body = f"image {self.path}".encode()
                self.send_response(upstream.status)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Cache-Control", "no-cache")  # the shared cache keeps it anyway
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cache(request: pytest.FixtureRequest, rendered: str, sandbox: Path) -> Iterator[tuple[str, Upstream]]:
    upstream = Upstream()
    port = _free_port()
    conf = _sandboxed(rendered, sandbox)
    validity = getattr(request, "param", None)
    if validity:  # shorten the validity so a test can see an entry expire
        assert "proxy_cache_valid 200 30d;" in conf
        conf = conf.replace("proxy_cache_valid 200 30d;", f"proxy_cache_valid 200 {validity};")
    conf = conf.replace("set $jellyfin http://jellyfin:8096;", f"set $jellyfin http://127.0.0.1:{upstream.port};")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # the sandbox belongs to root; a real container runs nginx's own user
    (sandbox / "nginx.conf").write_text(conf)
    server = subprocess.Popen(
        [
            require_tool("nginx"),
            "-p",
            str(sandbox),
            "-c",
            str(sandbox / "nginx.conf"),
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        yield base, upstream
    finally:
        server.terminate()
        server.wait(timeout=10)
        upstream.close()


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get("X-Cache-Status", ""), r.read()


def test_repeated_images_are_served_from_the_cache(cache: tuple[str, Upstream]) -> None:
    base, upstream = cache
    poster = "/Items/abc123/Images/Primary?fillWidth=300&quality=90&tag=deadbeef"
    assert _get(base + poster)[0] == "MISS"
    statuses = [_get(base + poster)[0] for _ in range(20)]
    assert statuses == ["HIT"] * 20
    assert upstream.hits[poster] == 1
    # Another size of the same image is another entry: the key keeps the query string.
    backdrop = "/Items/abc123/Images/Primary?fillWidth=1080&quality=90&tag=deadbeef"
    assert _get(base + backdrop)[0] == "MISS" and upstream.hits[backdrop] == 1
    assert _get(base + backdrop)[1] == f"image {backdrop}".encode()


@pytest.mark.parametrize("cache", ["1s"], indirect=True)
def test_expired_images_are_served_stale_while_jellyfin_fails(cache: tuple[str, Upstream]) -> None:
    base, upstream = cache
    poster = "/Items/xyz/Images/Primary?fillWidth=300"
    assert _get(base + poster)[0] == "MISS"
    time.sleep(2.5)  # the entry expires (nginx keeps time in whole seconds)
    upstream.status = 500
    status, body = _get(base + poster)
    assert status == "STALE" and body == f"image {poster}".encode()
    upstream.status = 200
    deadline = time.monotonic() + 5  # the background update refreshes it once Jellyfin answers again
    while time.monotonic() < deadline and _get(base + poster)[0] != "HIT":
        time.sleep(0.2)
    assert _get(base + poster)[0] == "HIT"
