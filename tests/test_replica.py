"""Immich's PostgreSQL read replica, for real: a primary with the stack's pg_hba and replication settings, the
replica's init script taking the base backup over loopback with the password, a standby that streams what the
primary writes and answers reads; and the cluster plan wiring it to a second node."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import plan, raw_config
from mediastack.generate.replica import (
    HBA_FILE,
    PRIMARY,
    REPLICA,
    SLOT,
    pg_hba,
    primary_settings,
    replica_init,
    standby_settings,
)
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "replica-test-password"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def services() -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in plan("cluster").resources if r.type == "docker:index/service:Service"}


def test_the_cluster_runs_a_replica_on_another_node() -> None:
    swarm = services()
    primary, replica = swarm[PRIMARY], swarm[REPLICA]
    place = {n: s["taskSpec"]["placement"]["constraints"] for n, s in ((PRIMARY, primary), (REPLICA, replica))}
    assert place[PRIMARY] != place[REPLICA] and len(place[REPLICA]) == 1
    p_args, r_args = primary["taskSpec"]["containerSpec"]["args"], replica["taskSpec"]["containerSpec"]["args"]
    assert f"hba_file={HBA_FILE}" in p_args and "wal_level=replica" in p_args and "hot_standby=on" not in p_args
    assert r_args[:3] == ["sh", "/usr/local/bin/mediastack-replica.sh", "postgres"]
    assert {"hot_standby=on", "hot_standby_feedback=on", f"hba_file={HBA_FILE}"} <= set(r_args)
    labels = {i["label"]: i["value"] for i in replica["labels"]}
    assert labels["mediastack.replica-of"] == PRIMARY
    env = replica["taskSpec"]["containerSpec"]["env"]
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/immich-db-password" and "POSTGRES_PASSWORD" not in env
    # single-host stacks have no replica and an unchanged primary
    prod = {r.inputs["name"]: r.inputs for r in plan("prod").resources if r.type == "docker:index/container:Container"}
    assert REPLICA not in prod and not any("hba_file" in a for a in prod[PRIMARY]["command"])


def _as_postgres(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{PG_BIN}:/usr/bin:/bin", **(env or {})}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        args = [RUNUSER, "-u", "postgres", "--", "env", *(f"{k}={v}" for k, v in full.items()), *args]
    return subprocess.run(args, env={**os.environ, **full}, capture_output=True, text=True, timeout=120, **kwargs)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(data: Path, sockets: Path, port: int, settings: dict[str, str]) -> subprocess.Popen[str]:
    args = [str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sockets), "-p", str(port)]
    args += ["-c", "listen_addresses=127.0.0.1"]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    log = open(sockets / f"postgres-{port}.log", "w")  # noqa: SIM115 - the server writes it while it runs
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)


def _sql(port: int, query: str, password: str = PASSWORD, db: str = "immich") -> subprocess.CompletedProcess[str]:
    env = {"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}
    return _as_postgres(
        [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "immich", "-d", db, "-Atc", query], env
    )


def _wait(port: int, query: str, expected: str, server: subprocess.Popen[str], db: str = "immich") -> str:
    deadline = time.monotonic() + 30
    out = ""
    while time.monotonic() < deadline and server.poll() is None:
        result = _sql(port, query, db=db)
        out = result.stdout.strip()
        if result.returncode == 0 and out == expected:
            return out
        time.sleep(0.2)
    return out


@pytest.fixture
def lab() -> Iterator[Path]:
    if not (PG_BIN / "postgres").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("postgresql-15 is required in CI (.ci/run installs it)")
        pytest.skip("postgresql-15 is not installed")
    root = Path(tempfile.mkdtemp(prefix="mediastack-replica-"))  # the server runs as postgres: not pytest's tmp
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_real_standby_streams_and_answers_reads(lab: Path) -> None:
    stack = resolve(parse_stack_config(raw_config("cluster"), "cluster"), "cluster")
    (lab / "pw").write_text(PASSWORD)
    (lab / "pg_hba.conf").write_text(pg_hba(stack))
    (lab / "init.sh").write_text(replica_init(stack))
    if os.geteuid() == 0:
        for name in ("pw", "pg_hba.conf", "init.sh"):
            shutil.chown(lab / name, "postgres")
    initdb = _as_postgres(
        [str(PG_BIN / "initdb"), "-D", str(lab / "primary"), "-U", "immich", f"--pwfile={lab / 'pw'}", "-A", "trust"]
    )
    assert initdb.returncode == 0, initdb.stderr
    p_port, r_port = _port(), _port()
    primary = _server(lab / "primary", lab, p_port, {**primary_settings(), "hba_file": str(lab / "pg_hba.conf")})
    replica: subprocess.Popen[str] | None = None
    try:
        assert _wait(p_port, "SELECT 1", "1", primary, db="postgres") == "1"
        assert _sql(p_port, "SELECT 1", password="wrong", db="postgres").returncode != 0  # scram over TCP, not trust
        assert _sql(p_port, "CREATE DATABASE immich", db="postgres").returncode == 0  # as the image's POSTGRES_DB
        assert (
            _sql(p_port, "CREATE TABLE assets (id int); INSERT INTO assets SELECT generate_series(1, 500)").returncode
            == 0
        )
        env = {
            "PGDATA": str(lab / "replica"),
            "PGUSER": "immich",
            "PGPORT": str(p_port),
            "REPLICA_PRIMARY": "127.0.0.1",
            "POSTGRES_PASSWORD_FILE": str(lab / "pw"),
        }
        first = _as_postgres(["sh", str(lab / "init.sh")], env)
        assert first.returncode == 0, first.stderr
        assert "base backup taken" in first.stdout
        assert (lab / "replica/standby.signal").exists()
        again = _as_postgres(["sh", str(lab / "init.sh")], env)  # a populated data directory is left alone
        assert again.returncode == 0 and "starting it as it is" in again.stdout
        settings = {**primary_settings(), **standby_settings(), "hba_file": str(lab / "pg_hba.conf")}
        replica = _server(lab / "replica", lab, r_port, settings)
        assert _wait(r_port, "SELECT pg_is_in_recovery(), count(*) FROM assets", "t|500", replica) == "t|500"
        assert _sql(p_port, "INSERT INTO assets SELECT generate_series(501, 600)").returncode == 0
        assert _wait(r_port, "SELECT count(*) FROM assets", "600", replica) == "600"  # streamed
        assert _sql(r_port, "INSERT INTO assets VALUES (0)").returncode != 0  # read-only
        slot = _wait(p_port, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'", "t", primary)
        assert slot == "t"
    finally:
        for server in (replica, primary):
            if server is not None and server.poll() is None:
                server.terminate()
                server.wait(timeout=30)


def test_the_replica_script_passes_shellcheck(tmp_path: Path) -> None:
    from conftest import require_tool
    from mediastack.generate.replica import replica_entrypoint

    stack = resolve(parse_stack_config(raw_config("cluster"), "cluster"), "cluster")
    for name, text in (("entry.sh", replica_entrypoint(stack)), ("init.sh", replica_init(stack))):
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [
            require_tool("shellcheck"),
            "--shell=sh",
            "--severity=style",
            str(tmp_path / "entry.sh"),
            str(tmp_path / "init.sh"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
