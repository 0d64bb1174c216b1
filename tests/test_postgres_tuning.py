"""PostgreSQL tuning: computed from the container's limits, accepted and reported back by a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import containers, plan, plan_config, raw_config
from mediastack.model.config import StorageKind
from mediastack.plan.postgres_settings import GIB, MIB, postgres_command, postgres_settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def test_settings_follow_the_container_not_the_host() -> None:
    small = postgres_settings(2 * GIB, 2, StorageKind.ssd)
    big = postgres_settings(16 * GIB, 8, StorageKind.hdd)
    assert small["shared_buffers"] == "512MB" and small["effective_cache_size"] == "1536MB"
    assert big["shared_buffers"] == "4096MB" and big["max_parallel_workers"] == "8"
    assert (small["random_page_cost"], big["random_page_cost"]) == ("1.1", "4.0")
    assert (small["effective_io_concurrency"], big["effective_io_concurrency"]) == ("200", "2")
    assert postgres_settings(64 * GIB, 16, StorageKind.ssd)["shared_buffers"] == "8192MB"  # capped
    assert postgres_settings(2 * GIB, 2, StorageKind.ssd, overrides={"work_mem": "64MB"})["work_mem"] == "64MB"


def test_the_stack_passes_them_to_immich_postgres() -> None:
    command = containers(plan("prod"))["immich-postgres"]["command"]
    assert command[0] == "postgres"
    assert "shared_buffers=512MB" in command  # standard tier: 2GiB
    cfg = raw_config("prod")
    cfg["postgres_settings"] = {"work_mem": "64MB"}
    command = containers(plan_config(cfg, stack="pgtune"))["immich-postgres"]["command"]
    assert "work_mem=64MB" in command


def _run_as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    if not (PG_BIN / "postgres").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("postgresql-15 is required in CI (.ci/run installs it)")
        pytest.skip("postgresql-15 is not installed")
    # Directly under /tmp: pytest's own tmp tree is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="mediastack-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        result = _run_as_postgres([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres"])
        assert result.returncode == 0, result.stderr
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(root: Path, settings: dict[str, str]) -> subprocess.Popen[str]:
    args = [str(PG_BIN / "postgres"), "-D", str(root / "data"), "-k", str(root), "-c", "listen_addresses="]
    args += list(postgres_command(settings)[1:])
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_real_postgres_accepts_and_reports_the_settings(data_dir: Path) -> None:
    settings = postgres_settings(2 * GIB, 2, StorageKind.ssd)
    server = _start(data_dir, settings)
    try:
        shown: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            names = ",".join(f"'{k}'" for k in settings)
            query = f"SELECT name, setting, unit FROM pg_settings WHERE name = ANY(ARRAY[{names}])"
            result = _run_as_postgres(
                [str(PG_BIN / "psql"), "-h", str(data_dir), "-U", "postgres", "-At", "-F", "|", "-c", query]
            )
            if result.returncode == 0:
                for line in result.stdout.splitlines():
                    name, value, unit = line.split("|")
                    shown[name] = f"{value}|{unit}"
                break
            time.sleep(0.2)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert set(shown) == set(settings)
        # pg_settings reports memory in its unit (8kB pages or kB): convert back and compare.
        units = {"8kB": 8 * 1024, "kB": 1024, "MB": MIB, "": 1}
        for name in ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "wal_buffers"):
            value, unit = shown[name].split("|")
            assert int(value) * units[unit] == int(settings[name].removesuffix("MB")) * MIB, name
        assert shown["random_page_cost"].split("|")[0] == "1.1"
        assert shown["jit"].split("|")[0] == "off"
        assert shown["max_parallel_workers"].split("|")[0] == "2"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_real_postgres_refuses_a_bad_setting(data_dir: Path) -> None:
    server = _start(data_dir, {"shared_buffers": "lots"})
    try:
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode != 0
    assert "shared_buffers" in (server.stderr.read() if server.stderr else "")
