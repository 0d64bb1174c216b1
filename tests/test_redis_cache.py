"""The Redis cache's generated arguments, run by a real redis-server on loopback and read back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import containers, plan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_redis_runs_as_a_bounded_cache(tmp_path) -> None:
    server_bin = shutil.which("redis-server")
    if not server_bin:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    redis = containers(plan("prod"))["redis"]
    args = list(redis["command"][1:])  # after `redis-server`
    port = _free_port()
    server = subprocess.Popen(
        [server_bin, *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cli = [shutil.which("redis-cli") or "redis-cli", "-p", str(port)]
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if subprocess.run([*cli, "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.1)

        def get(key: str) -> str:
            out = subprocess.run([*cli, "config", "get", key], capture_output=True, text=True, timeout=10).stdout
            return out.splitlines()[1]

        assert int(get("maxmemory")) == redis["memory"] * 1024**2 * 3 // 4
        assert get("maxmemory-policy") == "allkeys-lru"
        assert get("appendonly") == "no" and get("save") == ""
    finally:
        server.terminate()
        server.wait(timeout=10)
