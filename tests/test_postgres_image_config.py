"""Immich's PostgreSQL keeps the config file its image's CMD loads: checked by a real server.

The image's CMD is `postgres -c config_file=/etc/postgresql/postgresql.conf`, and that file is the only place
shared_preload_libraries (its vector extensions) is set (immich-app/base-images postgres/Dockerfile and
postgresql.ssd.conf). Here a stand-in config file preloads pg_stat_statements, which Debian's server has.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from test_postgres_tuning import PG_BIN, _run_as_postgres, data_dir  # noqa: F401 (fixture)

from conftest import raw_config
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve

IMAGE_CONFIG = "config_file=/etc/postgresql/postgresql.conf"


def _show(root: Path, command: tuple[str, ...], names: tuple[str, ...]) -> dict[str, str]:
    """Start a real server with `command` (the resolved one, minus `postgres`) and read the settings back."""
    conf = root / "postgresql.conf"
    conf.write_text("shared_preload_libraries = 'pg_stat_statements'\n")
    args = [a.replace(IMAGE_CONFIG, f"config_file={conf}") for a in command[1:]]
    args = [str(PG_BIN / "postgres"), "-D", str(root / "data"), "-k", str(root), "-c", "listen_addresses=", *args]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            query = f"SELECT name, setting FROM pg_settings WHERE name IN ({','.join(repr(n) for n in names)})"
            result = _run_as_postgres([str(PG_BIN / "psql"), "-h", str(root), "-U", "postgres", "-At", "-c", query])
            if result.returncode == 0:
                return dict(line.split("|", 1) for line in result.stdout.splitlines())
            time.sleep(0.2)
        raise AssertionError(server.stderr.read() if server.stderr else "the server did not start")
    finally:
        # runuser does not pass a SIGTERM on: stop the server itself.
        _run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "fast"])
        server.wait(timeout=30)


def test_the_resolved_command_loads_the_images_config_and_tunes_on_top(data_dir: Path) -> None:  # noqa: F811
    command = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod").get("immich-postgres").command
    assert IMAGE_CONFIG in command
    shown = _show(data_dir, command, ("shared_preload_libraries", "shared_buffers"))
    assert shown["shared_preload_libraries"] == "pg_stat_statements"  # from the image's file
    assert shown["shared_buffers"] == str(512 * 1024 // 8)  # 512MB in 8kB pages: the tuning on top


def test_without_the_config_file_the_libraries_are_not_loaded(data_dir: Path) -> None:  # noqa: F811
    """The defect this guards against: a `postgres -c ...` command without the image's config_file."""
    command = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod").get("immich-postgres").command
    dropped = ("postgres", *command[3:])
    assert _show(data_dir, dropped, ("shared_preload_libraries",))["shared_preload_libraries"] == ""
