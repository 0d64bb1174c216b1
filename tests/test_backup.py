"""Backups: coverage from the catalog, schedules held to systemd, the install, and the real tool on real data.

The tool tests run the generated `mediastack-backup` script itself with Debian's restic and a local
repository: a SQLite database under a concurrent writer, a PostgreSQL 15 database dumped and loaded into a
fresh server, a Redis queue, the repository's own check (passing, then catching corruption), and
retention on snapshots with made-up times. Docker is a stand-in script that logs what it is asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, containers, plan, plan_config, raw_config, require_tool
from mediastack.catalog.services import CATALOG
from mediastack.host.backup import (
    BACKUP_METRICS,
    COVERS_MARKER,
    METRICS_FILE,
    NAME,
    STATE_DIR,
    backup_plan,
    backup_scripts,
    backup_tool,
    coverage,
    covers_marker,
    textfile_flag,
    too_old_after,
)
from mediastack.model.calendar import parse
from mediastack.model.config import StackConfig
from mediastack.plan.loading import ConfigError, parse_stack_config
from mediastack.plan.resolve import resolve

PG_BIN = Path("/usr/lib/postgresql/15/bin")
APP_UID = 1000  # the stack's PUID: the owner of the app databases


def config_for(root: Path | str, bundles: list[str], **backups: Any) -> StackConfig:
    raw = {
        "domain": "media.example.org",
        "hosts": [{"name": "nas", "address": "localhost", "cpus": 16, "memory": "64GiB"}],
        "paths": {
            "config_root": f"{root}/config",
            "data_root": f"{root}/data",
            "cache_root": f"{root}/cache",
            "photos_root": f"{root}/photos",
        },
        "bundles": bundles,
        "backups": {"repository": f"{root}/repository", **backups},
    }
    return parse_stack_config(raw, "test")


# -- coverage, from the catalog -----------------------------------------------------------------------


def test_every_stateful_service_is_covered_and_nothing_else() -> None:
    config = parse_stack_config(raw_config("prod"), "prod")
    stack = resolve(config, "prod")
    covered = {c.service: c for c in coverage(stack)}
    assert list(covered) == [s.name for s in stack.services if s.spec.state]
    assert "redis" not in covered and "socket-proxy" not in covered  # a pure cache, and a stateless proxy
    assert covered["sonarr"].kind == "sqlite" and covered["sonarr"].files == ("/srv/media/config/sonarr",)
    pg = covered["immich-postgres"]
    assert (pg.kind, pg.files, pg.clients, pg.db_user, pg.db_name) == (
        "postgres",
        (),
        ("immich-server",),
        "immich",
        "immich",
    )
    assert covered["immich-redis"].cli == "valkey-cli"
    assert "/srv/media/config/prometheus/wal" in covered["prometheus"].excludes
    # prod opts in to the photo library, without what Immich rebuilds
    assert covered["immich-server"].in_place == ("/srv/media/photos",)
    assert "/srv/media/photos/thumbs" in covered["immich-server"].excludes
    tool = backup_tool(backup_plan(stack))  # type: ignore[arg-type]
    for name in covered:
        assert f"    {name}) echo {covered[name].kind} ;;" in tool


def test_a_new_catalog_entry_with_state_is_backed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    lidarr = dataclasses.replace(CATALOG["sonarr"], name="lidarr", secret_env={})
    monkeypatch.setitem(CATALOG, "lidarr", lidarr)
    stack = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")
    assert "lidarr" in stack.enabled
    plan_ = backup_plan(stack)
    assert plan_ is not None and "lidarr" in plan_.services
    assert "/srv/media/config/lidarr" in backup_tool(plan_)
    assert "lidarr" in covers_marker(plan_.covered).split("=", 1)[1].split(",")


def test_the_photo_library_is_opt_in() -> None:
    off = resolve(config_for("/srv/t", ["photos"]), "t")
    immich = next(c for c in coverage(off) if c.service == "immich-server")
    assert immich.in_place == () and "backups.include_photos is false" in immich.note
    assert covers_marker(coverage(off)).endswith(";excluded=immich-server")
    on = resolve(config_for("/srv/t", ["photos"], include_photos=True), "t")
    immich = next(c for c in coverage(on) if c.service == "immich-server")
    assert immich.in_place == ("/srv/t/photos",) and "/srv/t/photos/encoded-video" in immich.excludes
    assert ";excluded=" not in covers_marker(coverage(on))


@pytest.mark.parametrize(
    ("backups", "message"),
    [
        ({"repository": "backups"}, "must be a local path"),
        ({"repository": "s3:https://s3.example.org/media"}, "needs s3_access_key_id and s3_secret_access_key"),
        ({"repository": "/srv/t/config/restic"}, "overlaps paths.config_root"),
        ({"repository": "/srv/t/data/backup"}, "overlaps paths.data_root"),
        ({"repository": "/mnt/b", "schedule": "every night"}, "'every' is not a weekday (Mon, Tue, ... Sun); use"),
        ({"repository": "/mnt/b", "schedule": "Mon 03:00 extra"}, "not a schedule this stack accepts"),
        ({"repository": "/mnt/b", "schedule": "*-*-* 25:00"}, "hour must be between 0 and 23"),
        ({"repository": "/mnt/b", "retention": {"daily": 0, "weekly": 0, "monthly": 0}}, "keeps nothing"),
        ({"repository": "/mnt/b", "check_read_data_subset": "lots"}, "percentage such as 5%"),
    ],
)
def test_config_refuses_bad_backup_settings(backups: dict[str, Any], message: str) -> None:
    raw = raw_config("dev")
    raw["paths"] = {"config_root": "/srv/t/config", "data_root": "/srv/t/data", "cache_root": "/srv/t/cache"}
    raw["backups"] = backups
    with pytest.raises(ConfigError) as error:
        parse_stack_config(raw, "dev")
    assert message in str(error.value)
    assert "mediastack:backups" in str(error.value)


# -- the schedule, held to systemd ---------------------------------------------------------------------

SCHEDULES = [
    "*-*-* 03:30:00",
    "*-*-* 03:30",
    "daily",
    "hourly",
    "weekly",
    "Sun *-*-* 05:00:00",
    "Mon,Thu 02:15",
    "Mon..Fri *-*-* 0/6:00:30",
    "sat,sun 1..3:45",
    "*-*-* 4,16:00",
]


def _systemd_elapses(analyze: str, expression: str, count: int) -> list[datetime]:
    done = subprocess.run(
        [analyze, "calendar", f"--iterations={count}", "--base-time=2025-01-01 00:00:00 UTC", expression],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": "UTC"},
    )
    assert done.returncode == 0, done.stderr
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
    return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in found]


@pytest.mark.parametrize("expression", SCHEDULES)
def test_schedules_elapse_as_systemd_says(expression: str) -> None:
    analyze = require_tool("systemd-analyze")
    ours = parse(expression).next_elapses(datetime(2025, 1, 1), 12)
    assert ours == _systemd_elapses(analyze, expression, 12)


@pytest.mark.parametrize("expression", ["*-*-* 24:00", "Mon..Foo 03:00", "*-*-* */6:00", "03:00:00:00"])
def test_what_systemd_refuses_is_refused(expression: str) -> None:
    analyze = require_tool("systemd-analyze")
    with pytest.raises(ValueError):
        parse(expression)
    done = subprocess.run([analyze, "calendar", expression], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


def test_the_alert_threshold_follows_the_schedule() -> None:
    assert parse("*-*-* 03:30").max_gap_seconds() == 86400
    assert parse("Mon,Thu 02:15").max_gap_seconds() == 4 * 86400
    assert parse("*-*-* 0/6:00").max_gap_seconds() == 6 * 3600
    daily = config_for("/srv/t", ["arr"])
    assert too_old_after(daily) == 30 * 3600  # a day, and 6 hours of grace
    weekly = config_for("/srv/t", ["arr"], schedule="Sun 04:00", alert_grace_hours=12)
    assert too_old_after(weekly) == 7 * 86400 + 12 * 3600


# -- the install ---------------------------------------------------------------------------------------


def _s3_config() -> StackConfig:
    return config_for(
        "/srv/t",
        ["photos", "arr"],
        repository="s3:https://s3.example.org/media-backups/nas",
        s3_access_key_id="AKIA-EXAMPLE-ID",
        s3_secret_access_key="s3cr3t/with'quote",
        check_read_data_subset="5%",
    )


def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    prod = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")
    for label, stack in (("prod", prod), ("s3", resolve(_s3_config(), "t"))):
        paths = []
        for name, content in backup_scripts(stack).items():
            if name.endswith(".sh"):
                path = tmp_path / f"{label}-{name}"
                path.write_text(content)
                paths.append(str(path))
        done = subprocess.run([shellcheck, "-s", "sh", *paths], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (p.read_text() + oct(p.stat().st_mode) if p.is_file() else "<dir>")
        for p in sorted(root.rglob("*"))
    }


def _run_create(script: str, root: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script],
        input=stdin,
        env={**os.environ, "ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_install_is_idempotent_keeps_secrets_private_and_reverts(tmp_path: Path) -> None:
    scripts = backup_scripts(resolve(_s3_config(), "t"))
    root = tmp_path / "host"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/unrelated.service").write_text("[Unit]\n")
    before = _snapshot(root)
    secrets = "the-password\nAWS_ACCESS_KEY_ID='AKIA-EXAMPLE-ID'\n"
    first = _run_create(scripts["backup-create.sh"], root, secrets)
    assert first.returncode == 0, first.stderr
    assert "backup: installed tool" in first.stdout and "password credentials" in first.stdout
    tool = root / f"usr/local/sbin/{NAME}"
    assert tool.read_text() == scripts[f"{NAME}.sh"] and os.access(tool, os.X_OK)
    for unit in (f"{NAME}.service", f"{NAME}.timer", f"{NAME}-check.service", f"{NAME}-check.timer"):
        assert (root / "etc/systemd/system" / unit).read_text() == scripts[unit]
    state = root / STATE_DIR.lstrip("/")
    assert (state / "password").read_text() == "the-password\n"
    assert (state / "env").read_text() == "AWS_ACCESS_KEY_ID='AKIA-EXAMPLE-ID'\n"
    for secret in ("password", "env"):
        assert stat.S_IMODE((state / secret).stat().st_mode) == 0o600
    installed = _snapshot(root)
    again = _run_create(scripts["backup-create.sh"], root, secrets)
    assert again.returncode == 0 and again.stdout.strip() == "backup: files unchanged"
    assert _snapshot(root) == installed
    assert _run_create(scripts["backup-create.sh"], root, "").returncode == 1  # no password: refuses
    reverted = _run_create(scripts["backup-delete.sh"], root, "")
    assert reverted.returncode == 0, reverted.stderr
    after = _snapshot(root)
    kept = {k: v for k, v in after.items() if k.startswith(STATE_DIR.lstrip("/"))}
    # what stays besides the kept state: only the (now empty) directories the install made
    leftover = {k: v for k, v in after.items() if k not in kept and k not in before}
    assert leftover == {
        k: "<dir>" for k in ("usr", "usr/local", "usr/local/sbin", "var", "var/lib", "var/lib/mediastack")
    }
    assert all(after.get(k) == v for k, v in before.items())
    assert (state / "password").read_text() == "the-password\n"  # the repository stays readable


def test_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    scripts = backup_scripts(resolve(parse_stack_config(raw_config("prod"), "prod"), "prod"))
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    assert _run_create(scripts["backup-create.sh"], root, "pw\n").returncode == 0
    units = [str(root / "etc/systemd/system" / u) for u in scripts if u.endswith((".service", ".timer"))]
    assert len(units) == 4
    done = subprocess.run([analyze, "verify", f"--root={root}", *units], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "OnCalendar=*-*-* 03:30:00" in scripts[f"{NAME}.timer"]


def _mock_password(name: str) -> str:
    import hashlib

    seed = hashlib.sha256(f"random:index/randomPassword:RandomPassword/{name}".encode()).hexdigest()
    return (seed * 4)[:48]


def test_the_plan_carries_secrets_only_as_secrets() -> None:
    result = plan("prod")
    (install,) = [r for r in result.resources if r.name == "media-nas-backups-install"]
    assert install.type == "command:remote:Command"
    assert install.inputs["stdin"] == "[secret]"
    assert any(str(t).startswith(COVERS_MARKER + "traefik,") for t in install.inputs["triggers"])
    assert "media-nas-backups-password" in {r.name for r in result.resources}
    text = json.dumps(result.to_json())
    assert _mock_password("media-nas-backups-password") not in text
    cfg = raw_config("prod")
    cfg["backups"] = {
        "repository": "s3:https://s3.example.org/media-backups/nas",
        "s3_access_key_id": "AKIA-EXAMPLE-ID",
        "s3_secret_access_key": "s3cr3t-value-never-in-plans",
        "password": "a-password-from-the-old-stack",
    }
    s3 = plan_config(cfg, stack="s3")
    text = json.dumps(s3.to_json())
    for secret in ("s3cr3t-value-never-in-plans", "AKIA-EXAMPLE-ID", "a-password-from-the-old-stack"):
        assert secret not in text
    assert "media-nas-backups-password" not in {r.name for r in s3.resources}  # the configured one is used


def test_node_exporter_reads_the_backup_metrics() -> None:
    assert textfile_flag() in containers(plan("prod"))["node-exporter"]["command"]
    cfg = raw_config("prod")
    del cfg["backups"]
    unbacked = plan_config(cfg, stack="nobackup")
    assert textfile_flag() not in containers(unbacked)["node-exporter"]["command"]
    assert not [r for r in unbacked.resources if "backups" in r.name]


# -- the real tool -------------------------------------------------------------------------------------

FAKE_DOCKER = """#!/bin/sh
# Stands in for docker: logs every call (with the watched file's inode on stop and start) and answers the
# few questions the tool asks.
echo "$*" >> "$DOCKER_LOG"
case "$1" in
  stop|start)
    if [ -n "${WATCH:-}" ] && [ -e "$WATCH" ]; then
      echo "  inode $(stat -c %i "$WATCH")" >> "$DOCKER_LOG"
    fi
    ;;
  exec)
    case "$*" in
      *LASTSAVE*) date +%s ;;
    esac
    ;;
esac
"""


@pytest.fixture
def host() -> Iterator[Path]:
    """A directory standing for the host's file system (under /tmp, open to the app's uid and postgres)."""
    for tool in ("restic", "sqlite3", "setpriv"):
        require_tool(tool)
    root = Path(tempfile.mkdtemp(prefix="mediastack-backup-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Tool:
    """The generated mediastack-backup for a config, with its state and metrics under the host directory."""

    def __init__(self, host: Path, config: StackConfig, **env: str):
        self.host = host
        self.path = host / NAME
        self.path.write_text(backup_tool(backup_plan(resolve(config, "test"))))  # type: ignore[arg-type]
        self.path.chmod(0o755)
        self.state = host / "state"
        self.state.mkdir(mode=0o711, exist_ok=True)
        (self.state / "password").write_text("correct horse battery staple\n")
        self.metrics = host / "metrics"
        self.docker_log = host / "docker.log"
        docker = host / "docker"
        docker.write_text(FAKE_DOCKER)
        docker.chmod(0o755)
        self.env = {
            **os.environ,
            "MEDIASTACK_STATE_DIR": str(self.state),
            "MEDIASTACK_METRICS_DIR": str(self.metrics),
            "DOCKER": str(docker),
            "DOCKER_LOG": str(self.docker_log),
            "TZ": "UTC",
            **env,
        }

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.path), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    def metric_values(self) -> dict[str, float]:
        values = {}
        for line in (self.metrics / METRICS_FILE).read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def snapshots(self) -> list[dict[str, Any]]:
        return json.loads(self.run("snapshots", "--json").stdout)


WRITER = r"""
import os, sqlite3, sys, time
db, mode, log, stop = sys.argv[1:5]
con = sqlite3.connect(db, timeout=60, isolation_level=None)
con.execute(f"PRAGMA journal_mode={mode}")
con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, total INTEGER NOT NULL)")
con.execute("CREATE TABLE lines (order_id INTEGER NOT NULL REFERENCES orders(id), amount INTEGER NOT NULL)")
con.execute("CREATE INDEX lines_order ON lines (order_id)")

def order(i):
    con.execute("INSERT INTO orders VALUES (?, ?, ?)", (i, os.urandom(1500), 3 * i))
    con.executemany("INSERT INTO lines VALUES (?, ?)", [(i, i)] * 3)

con.execute("BEGIN")
for i in range(1, 20001):
    order(i)
con.execute("COMMIT")
deadline = time.monotonic() + 90
with open(log, "a", buffering=1) as out:
    out.write(f"{i}\n")
    # Bounded in count and time; each id is logged only once its transaction has committed.
    while i < 300000 and time.monotonic() < deadline and not os.path.exists(stop):
        i += 1
        con.execute("BEGIN IMMEDIATE")
        order(i)
        con.execute("COMMIT")
        out.write(f"{i}\n")
"""


def _system_python() -> str:
    """Debian's python3 (the venv's may sit where the app's user cannot reach); the writer needs only sqlite3."""
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3"
    return sys.executable


def _last_committed(log: Path) -> int:
    lines = log.read_text().split()
    return int(lines[-1]) if lines else 0


def _check_orders(db: Path) -> int:
    """integrity_check passes and the rows are a consistent prefix 1..M of the writer's; returns M."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = [row[0] for row in con.execute("SELECT id FROM orders ORDER BY id")]
        last = ids[-1]
        assert ids == list(range(1, last + 1)), "a gap: the copy is not one point in time"
        assert con.execute("SELECT count(*), sum(amount) FROM lines").fetchone() == (
            3 * last,
            3 * last * (last + 1) // 2,
        )
        assert con.execute("SELECT sum(total) FROM orders").fetchone() == (3 * last * (last + 1) // 2,)
        assert con.execute("SELECT count(*) FROM lines WHERE order_id NOT IN (SELECT id FROM orders)").fetchone() == (
            0,
        )
        return last
    finally:
        con.close()


@pytest.mark.parametrize(
    ("journal", "method"), [("wal", "online-backup"), ("delete", "online-backup"), ("wal", "vacuum-into")]
)
def test_sqlite_under_a_concurrent_writer_backs_up_and_restores(host: Path, journal: str, method: str) -> None:
    config = config_for(host, ["arr"], sqlite_copy=method)
    sonarr = host / "config/sonarr"
    sonarr.mkdir(parents=True)
    shutil.chown(sonarr, APP_UID, APP_UID)
    (sonarr / "config.xml").write_text("<Config><Port>8989</Port></Config>\n")
    (sonarr / "logs").mkdir()
    (sonarr / "logs/sonarr.txt").write_text("a log line\n")
    shutil.chown(sonarr / "config.xml", APP_UID, APP_UID)
    work = host / "writer"
    work.mkdir()
    shutil.chown(work, APP_UID, APP_UID)
    db, log, stop = sonarr / "sonarr.db", work / "committed", work / "stop"
    (work / "writer.py").write_text(WRITER)
    tool = Tool(host, config)
    tool.run("init")
    # The app's writer runs as the app's user, as in its container.
    writer = subprocess.Popen(
        [_system_python(), str(work / "writer.py"), str(db), journal, str(log), str(stop)],
        user=APP_UID,
        group=APP_UID,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and _last_committed(log) >= 20050) and time.monotonic() < deadline:
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            time.sleep(0.05)
        before = _last_committed(log)
        backup = tool.run("backup")
        after = _last_committed(log)
        assert writer.poll() is None, "the writer must still be writing when the backup ends"
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert after > before, "the backup ran while rows were being committed"
    assert "sonarr: ready (sqlite)" in backup.stdout
    # The copy was made as the app's user: SQLite left nothing in the app's directory it cannot open.
    assert {p.stat().st_uid for p in sonarr.rglob("*") if p.name.startswith("sonarr.db")} == {APP_UID}
    listed = tool.run("restic", "ls", "latest").stdout.split()
    assert str(db) not in listed and str(sonarr / "logs/sonarr.txt") not in listed
    assert f"{tool.state}/staging/sqlite{db}" in listed and str(sonarr / "config.xml") in listed
    metrics = tool.metric_values()
    assert {name.split("{")[0] for name in metrics} <= set(BACKUP_METRICS)
    assert metrics["mediastack_backup_last_run_success"] == 1
    assert metrics["mediastack_backup_last_size_bytes"] > 30_000_000
    assert (
        metrics['mediastack_backup_service_last_success_timestamp_seconds{service="sonarr"}']
        == metrics["mediastack_backup_last_success_timestamp_seconds"]
    )
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=(tool.metrics / METRICS_FILE).read_text(),
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # Restore: the container is stopped before its state changes and started after.
    tool.run("restore", "sonarr", WATCH=str(db))
    calls = tool.docker_log.read_text().splitlines()
    assert [c for c in calls if not c.startswith(" ")] == ["inspect sonarr", "stop --time 120 sonarr", "start sonarr"]
    stopped_inode, started_inode = calls[2], calls[4]
    assert stopped_inode != started_inode and started_inode == f"  inode {db.stat().st_ino}"
    assert not list(sonarr.glob("sonarr.db-*")), "no WAL or journal beside the restored database"
    assert (sonarr / "config.xml").read_text() == "<Config><Port>8989</Port></Config>\n"
    assert db.stat().st_uid == APP_UID
    restored = _check_orders(db)
    assert before <= restored <= after, (before, restored, after)
    # The state it had is kept beside it, untouched.
    (kept,) = (host / "config").glob("sonarr.before-restore-*")
    assert _check_orders(kept / "sonarr.db") >= restored


def test_a_service_that_fails_fails_the_run_and_keeps_the_others(host: Path) -> None:
    config = config_for(host, ["arr"])
    for app in ("sonarr", "radarr"):
        (host / "config" / app).mkdir(parents=True)
        con = sqlite3.connect(host / "config" / app / f"{app}.db")
        con.execute("CREATE TABLE t (x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        con.close()
    tool = Tool(host, config)
    tool.run("init")
    tool.run("backup")
    first = tool.metric_values()
    time.sleep(1.1)
    broken = host / "config/radarr/radarr.db"
    data = bytearray(broken.read_bytes())
    data[100:4096] = os.urandom(3996)  # the header survives, the schema page does not
    broken.write_bytes(bytes(data))
    done = tool.run("backup", check=False)
    assert done.returncode == 1 and "radarr.db" in done.stderr and "missing radarr" in done.stderr
    metrics = tool.metric_values()
    assert metrics["mediastack_backup_last_run_success"] == 0
    assert (
        metrics["mediastack_backup_last_success_timestamp_seconds"]
        == first["mediastack_backup_last_success_timestamp_seconds"]
    )
    sonarr_ts = 'mediastack_backup_service_last_success_timestamp_seconds{service="sonarr"}'
    radarr_ts = 'mediastack_backup_service_last_success_timestamp_seconds{service="radarr"}'
    assert metrics[sonarr_ts] > first[sonarr_ts] and metrics[radarr_ts] == first[radarr_ts]
    assert len(tool.snapshots()) == 2  # sonarr's new state is in the second snapshot all the same


def _pg_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


class Postgres:
    """A throwaway PostgreSQL 15 as Immich's image makes it: bootstrap user `immich`, database `immich`."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = str(root)
        done = _pg_run([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "immich"])
        assert done.returncode == 0, done.stderr
        args = [str(PG_BIN / "postgres"), "-D", str(root / "data"), "-k", self.socket, "-c", "listen_addresses="]
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        self.server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1", db="postgres", check=False).returncode != 0:
            assert self.server.poll() is None and time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.2)
        self.psql("CREATE DATABASE immich", db="postgres")

    def psql(self, sql: str, db: str = "immich", check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-h", self.socket, "-U", "immich", "-d", db, "-At", "-v", "ON_ERROR_STOP=1"],
            input=sql,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def fingerprint(self) -> dict[str, str]:
        tables = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").stdout.split()
        found = {}
        for table in tables:
            found[table] = self.psql(
                f"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            ).stdout.strip()
        found["sequence"] = self.psql("SELECT last_value FROM assets_id_seq").stdout.strip()
        found["indexes"] = self.psql(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'"
        ).stdout.strip()
        return found

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)


@pytest.fixture
def pg_roots() -> Iterator[list[Path]]:
    if not (PG_BIN / "postgres").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("postgresql-15 is required in CI (.ci/run installs it)")
        pytest.skip("postgresql-15 is not installed")
    roots = []
    for _ in range(2):
        root = Path(tempfile.mkdtemp(prefix="mediastack-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        roots.append(root)
    try:
        yield roots
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


IMMICH_LIKE = """
CREATE TABLE assets (
  id bigserial PRIMARY KEY, "ownerId" uuid NOT NULL, "originalPath" text NOT NULL, checksum bytea NOT NULL,
  "fileCreatedAt" timestamptz NOT NULL, exif jsonb
);
CREATE TABLE albums (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE album_assets (
  "albumId" int REFERENCES albums(id) ON DELETE CASCADE, "assetId" bigint REFERENCES assets(id) ON DELETE CASCADE,
  PRIMARY KEY ("albumId", "assetId")
);
INSERT INTO assets ("ownerId", "originalPath", checksum, "fileCreatedAt", exif)
  SELECT md5(i::text)::uuid, '/photos/library/' || i || '.jpg', sha256(i::text::bytea),
         timestamptz '2020-01-01 00:00+00' + i * interval '37 minutes',
         jsonb_build_object('iso', 100 + i % 3200, 'make', 'Camera ' || i % 7, 'city', 'Town ' || i % 97)
  FROM generate_series(1, 50000) i;
INSERT INTO albums (name) SELECT 'album ' || i FROM generate_series(1, 50) i;
INSERT INTO album_assets SELECT 1 + i % 50, i FROM generate_series(1, 50000, 3) i;
CREATE INDEX assets_created ON assets ("fileCreatedAt");
CREATE INDEX assets_exif_city ON assets ((exif->>'city'));
"""


def test_postgres_and_redis_restore_into_fresh_servers(host: Path, pg_roots: list[Path]) -> None:
    redis_server = require_tool("redis-server")
    redis_cli = require_tool("redis-cli")
    config = config_for(host, ["photos"])
    source = Postgres(pg_roots[0])
    fresh: Postgres | None = None
    redis_dir = host / "config/immich-redis"
    redis_dir.mkdir(parents=True)
    sock = host / "redis.sock"

    def start_redis() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            [
                redis_server,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--dir",
                str(redis_dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while subprocess.run([redis_cli, "-s", str(sock), "PING"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return server

    def cli(*args: str) -> str:
        return subprocess.run([redis_cli, "-s", str(sock), *args], capture_output=True, text=True).stdout.strip()

    redis = start_redis()
    try:
        source.psql(IMMICH_LIKE)
        before = source.fingerprint()
        assert before["assets"].startswith("50000 ")
        cli("RPUSH", "immich_bull:thumbnailGeneration:wait", *[str(i) for i in range(1, 501)])
        cli("HSET", "immich_bull:thumbnailGeneration:42", "data", '{"id":"42"}', "attemptsMade", "1")
        tool = Tool(
            host,
            config,
            MEDIASTACK_PG_DUMP=f"{PG_BIN}/pg_dump --host={source.socket} --username=immich --dbname=immich "
            "--clean --if-exists --no-password",
            MEDIASTACK_REDIS_CLI=f"{redis_cli} -s {sock}",
        )
        tool.run("init")
        done = tool.run("backup")
        assert "immich-postgres: ready (postgres)" in done.stdout and "immich-redis: ready (redis)" in done.stdout
        # Both change after the snapshot: the restore must bring back the snapshot, not what is there now.
        source.psql("DELETE FROM album_assets; DELETE FROM assets WHERE id % 2 = 0")
        cli("FLUSHALL")
        cli("SAVE")
        redis.terminate()  # what `docker stop immich-redis` does
        redis.wait(timeout=20)

        fresh = Postgres(pg_roots[1])
        assert fresh.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").stdout.strip() == "0"
        restored = tool.run(
            "restore",
            "all",
            MEDIASTACK_PG_RESTORE=f"{PG_BIN}/psql --host={fresh.socket} --username=immich --dbname=immich "
            "--no-psqlrc --quiet --single-transaction --set=ON_ERROR_STOP=1 >/dev/null",
        )
        assert "immich-postgres: database loaded" in restored.stdout
        assert fresh.fingerprint() == before
        calls = [c for c in tool.docker_log.read_text().splitlines() if c.split()[0] in ("stop", "start")]
        # the database keeps running for its load; its client is stopped around it
        assert "stop --time 120 immich-server" in calls and "start immich-server" in calls
        assert "stop --time 120 immich-postgres" not in calls
        assert calls.index("start immich-postgres") < calls.index("start immich-server")

        redis = start_redis()
        assert cli("LLEN", "immich_bull:thumbnailGeneration:wait") == "500"
        assert cli("HGET", "immich_bull:thumbnailGeneration:42", "attemptsMade") == "1"
    finally:
        redis.terminate()
        redis.wait(timeout=20)
        source.stop()
        if fresh is not None:
            fresh.stop()


def test_the_repository_passes_its_check_and_a_damaged_one_does_not(host: Path) -> None:
    config = config_for(host, ["arr"], check_read_data_subset="100%")
    sonarr = host / "config/sonarr"
    sonarr.mkdir(parents=True)
    (sonarr / "config.xml").write_bytes(os.urandom(3_000_000))
    tool = Tool(host, config)
    tool.run("init")
    tool.run("backup")
    done = tool.run("check")
    assert "no errors were found" in done.stdout
    metrics = tool.metric_values()
    assert metrics["mediastack_backup_check_last_run_success"] == 1
    passed = metrics["mediastack_backup_check_last_success_timestamp_seconds"]
    packs = sorted((host / "repository/data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    damaged = packs[-1]
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    time.sleep(1.1)
    failed = tool.run("check", check=False)
    assert failed.returncode == 1 and "the repository check failed" in failed.stderr
    metrics = tool.metric_values()
    assert metrics["mediastack_backup_check_last_run_success"] == 0
    assert metrics["mediastack_backup_check_last_success_timestamp_seconds"] == passed


def _kept_by_policy(times: list[datetime], daily: int, weekly: int, monthly: int) -> set[datetime]:
    """restic's rule, written out: newest first, each snapshot that opens a new day (week, month) is kept until
    that many days (weeks, months) have one."""
    kept: set[datetime] = set()
    rules = (
        (daily, lambda t: t.date()),
        (weekly, lambda t: t.isocalendar()[:2]),
        (monthly, lambda t: (t.year, t.month)),
    )
    for count, bucket in rules:
        last, left = None, count
        for t in sorted(times, reverse=True):
            if left and bucket(t) != last:
                kept.add(t)
                last, left = bucket(t), left - 1
    return kept


def test_retention_removes_what_it_should_and_nothing_else(host: Path) -> None:
    config = config_for(host, [])  # the core only: Traefik's certificates are the state
    (host / "config/traefik").mkdir(parents=True)
    (host / "config/traefik/acme.json").write_text("{}\n")
    tool = Tool(host, config)
    tool.run("init")
    latest = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)  # a Monday
    times = [latest - timedelta(days=d) for d in range(9)]  # daily for nine days
    times += [latest - timedelta(days=d, hours=2) for d in (0, 5)]  # a second, older one on two days
    times += [latest - timedelta(days=d) for d in (12, 19, 26, 40)]  # then weekly-ish
    times += [latest - timedelta(days=d) for d in (64, 95, 125, 160, 190, 220, 260)]  # then monthly-ish
    oldest, *rest = sorted(times)
    tool.run("backup", MEDIASTACK_BACKUP_TIME=oldest.strftime("%Y-%m-%d %H:%M:%S"))
    for t in rest:  # restic backup --time, as the tool's backups are made (same host and tag); one call each
        stamp = t.strftime("%Y-%m-%d %H:%M:%S")
        tool.run("restic", "backup", "--host", "nas", "--tag", "mediastack", "--time", stamp, str(host / "config"))
    assert len(tool.snapshots()) == len(times)
    tool.run("forget")
    left = {datetime.fromisoformat(s["time"]).astimezone(UTC).replace(microsecond=0) for s in tool.snapshots()}
    expected = _kept_by_policy(times, 7, 4, 6)
    assert left == expected
    # 7 days (Jun 24-30); 2 more weeks (Jun 22, Jun 11); 5 more months (May 21, Apr 27, Mar 27, Feb 25, Jan 21)
    assert len(expected) == 7 + 2 + 5
    # gone: Jun 23, the two older same-day ones, Jun 18 and Jun 4 (weeks already counted), Dec, Nov, Oct
    assert len(times) - len(expected) == 8


def test_backup_too_old_fires_at_the_schedule_bound_and_not_before(tmp_path: Path) -> None:
    """Daily at 03:30 with 6 h of grace: silent at 29 h without a success, firing after 30 h (and its 5 m)."""
    import yaml

    from mediastack.generate.files import alert_rules

    promtool = require_tool("promtool")
    rules = yaml.safe_load(alert_rules(resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")))
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "BackupTooOld"]
    rule.pop("annotations")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "backup", "rules": [rule]}]}))
    series = [{"series": 'mediastack_backup_installed_timestamp_seconds{host="nas"}', "values": "0x4000"}]
    tests = [
        {
            "interval": "30s",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "29h", "alertname": "BackupTooOld", "exp_alerts": []},
                {"eval_time": "30h3m", "alertname": "BackupTooOld", "exp_alerts": []},  # pending (for: 5m)
                {
                    "eval_time": "30h6m",
                    "alertname": "BackupTooOld",
                    "exp_alerts": [{"exp_labels": {"host": "nas", "severity": "critical"}}],
                },
            ],
        }
    ]
    (tmp_path / "tests.yml").write_text(
        yaml.safe_dump({"rule_files": [str(tmp_path / "rules.yml")], "evaluation_interval": "30s", "tests": tests})
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_backups_command_shows_the_coverage() -> None:
    from typer.testing import CliRunner

    from mediastack_cli.main import app

    result = CliRunner().invoke(app, ["backups", "--stack", "prod", "--project", str(ROOT)])
    assert result.exit_code == 0, result.output
    for text in ("immich-postgres", "pg_dump", "sftp:restic@backup.home.arpa", "BackupTooOld after 30h"):
        assert text in result.output
