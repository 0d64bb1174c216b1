"""First-start files for the download clients: their own rate limits and the data tree, never overwriting."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

from components.config import StackConfig
from components.seeds import QBITTORRENT_CONF, SABNZBD_INI, seed_files, seed_script
from conftest import plan, raw_config, require_tool


def prod() -> StackConfig:
    return StackConfig.model_validate(raw_config("prod"))


def parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_clients_get_the_configured_limits() -> None:
    files = seed_files(prod(), frozenset({"qbittorrent", "sabnzbd"}))
    qbt = parse(files[f"/srv/media/config/qbittorrent/{QBITTORRENT_CONF}"])
    # prod: max_down 400mbit = 50 MB/s = 48828 KiB/s, max_up 16mbit = 2 MB/s = 1953 KiB/s
    assert qbt["BitTorrent"]["Session\\GlobalDLSpeedLimit"] == "48828"
    assert qbt["BitTorrent"]["Session\\GlobalUPSpeedLimit"] == "1953"
    assert qbt["BitTorrent"]["Session\\DefaultSavePath"] == "/data/torrents"
    assert qbt["Preferences"]["WebUI\\Port"] == "8090"
    sab = parse(files[f"/srv/media/config/sabnzbd/{SABNZBD_INI}"])
    assert sab["misc"]["bandwidth_max"] == "50M"
    assert sab["misc"]["complete_dir"].startswith("/data/usenet/")
    unlimited = StackConfig.model_validate({**raw_config("prod"), "downloads": {}, "hosts": [
        {k: v for k, v in raw_config("prod")["hosts"][0].items() if k != "link"}]})  # fmt: skip
    qbt = parse(seed_files(unlimited, frozenset({"qbittorrent"}))[f"/srv/media/config/qbittorrent/{QBITTORRENT_CONF}"])
    assert qbt["BitTorrent"]["Session\\GlobalDLSpeedLimit"] == "0"  # 0: unlimited


def test_seed_writes_once_and_never_overwrites(tmp_path: Path) -> None:
    files = seed_files(prod(), frozenset({"qbittorrent", "sabnzbd"}))
    script = seed_script(files, 1000, 1000)
    shellcheck = require_tool("shellcheck")
    (tmp_path / "seeds.sh").write_text(script)
    assert subprocess.run([shellcheck, "-s", "sh", str(tmp_path / "seeds.sh")]).returncode == 0
    root = tmp_path / "host"
    user_ini = root / "srv/media/config/sabnzbd/sabnzbd.ini"
    user_ini.parent.mkdir(parents=True)
    user_ini.write_text("[misc]\nbandwidth_max = 5M\n")  # the user's own file, from an earlier start
    env = {**os.environ, "ROOT": str(root)}
    first = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "seeds: 1 written, 1 already there (left as they are)"
    conf = root / f"srv/media/config/qbittorrent/{QBITTORRENT_CONF}"
    assert conf.read_text() == files[f"/srv/media/config/qbittorrent/{QBITTORRENT_CONF}"]
    assert user_ini.read_text() == "[misc]\nbandwidth_max = 5M\n"
    conf.write_text(conf.read_text() + "[Extra]\nchanged=by the app\n")
    second = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert second.stdout.strip() == "seeds: 0 written, 2 already there (left as they are)"
    assert conf.read_text().endswith("changed=by the app\n")


def test_seeds_run_after_the_directories_and_only_with_clients() -> None:
    names = [r.name for r in plan("prod").resources]
    assert "media-nas-storage-seeds" in names
    assert names.index("media-nas-storage-dirs") < names.index("media-nas-storage-seeds")
