"""First-start files for the download clients: their own rate limits and the data tree, never overwriting."""

from __future__ import annotations

import base64
import configparser
import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from conftest import plan, raw_config, require_tool
from mediastack.generate.seeds import (
    BAZARR_CONFIG,
    PBKDF2_ROUNDS,
    QBITTORRENT_CONF,
    SABNZBD_INI,
    SEERR_SETTINGS,
    SecretPlaceholders,
    seed_files,
    seed_owners,
    seed_script,
)
from mediastack.model.config import StackConfig

SECRETS = {"qbittorrent-password": "s3cret-pass", "sabnzbd-api-key": "f" * 32, "bazarr-api-key": "0" * 32,
           "sabnzbd-password": "sab-pass", "bazarr-password": "bazarr-pass", "seerr-api-key": "e" * 32}  # fmt: skip


def prod() -> StackConfig:
    return StackConfig.model_validate(raw_config("prod"))


def parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_clients_get_the_configured_limits() -> None:
    files = seed_files(prod(), frozenset({"qbittorrent", "sabnzbd"}), SECRETS)
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
    qbt = parse(
        seed_files(unlimited, frozenset({"qbittorrent"}), SECRETS)[f"/srv/media/config/qbittorrent/{QBITTORRENT_CONF}"]
    )
    assert qbt["BitTorrent"]["Session\\GlobalDLSpeedLimit"] == "0"  # 0: unlimited


def test_seed_writes_once_and_never_overwrites(tmp_path: Path) -> None:
    files = seed_files(prod(), frozenset({"qbittorrent", "sabnzbd"}), SECRETS)
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
    assert oct(conf.stat().st_mode & 0o777) == "0o600"  # it holds the web UI's password hash
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


def test_clients_get_the_stack_credentials() -> None:
    files = seed_files(prod(), frozenset({"qbittorrent", "sabnzbd", "bazarr"}), SECRETS)
    qbt = parse(files[f"/srv/media/config/qbittorrent/{QBITTORRENT_CONF}"])["Preferences"]
    assert qbt["WebUI\\Username"] == "admin"
    # qBittorrent's own check: PBKDF2-HMAC-SHA512 over the password with the stored salt gives the stored key.
    stored = qbt["WebUI\\Password_PBKDF2"].strip('"').removeprefix("@ByteArray(").removesuffix(")")
    salt, key = (base64.b64decode(part) for part in stored.split(":"))
    assert len(salt) == 16 and len(key) == 64
    assert hashlib.pbkdf2_hmac("sha512", b"s3cret-pass", salt, PBKDF2_ROUNDS) == key
    assert hashlib.pbkdf2_hmac("sha512", b"another", salt, PBKDF2_ROUNDS) != key
    # The same password seeds the same file: no change on every `pulumi up`.
    assert seed_files(prod(), frozenset({"qbittorrent"}), SECRETS) == {
        k: v for k, v in files.items() if "qbittorrent" in k
    }
    sab = parse(files[f"/srv/media/config/sabnzbd/{SABNZBD_INI}"])["misc"]
    assert sab["api_key"] == "f" * 32
    assert sab["host_whitelist"] == "sabnzbd, sabnzbd.media.example.org"  # Sonarr's name for it, and Traefik's
    assert (sab["username"], sab["password"]) == ("admin", "sab-pass")  # a web login from the first start
    bazarr = yaml.safe_load(files[f"/srv/media/config/bazarr/{BAZARR_CONFIG}"])
    # Bazarr compares the MD5 hex of what is typed with auth.password (bazarr/app/config.py save_settings).
    md5 = hashlib.md5(b"bazarr-pass").hexdigest()
    assert bazarr == {"auth": {"apikey": "0" * 32, "type": "form", "username": "admin", "password": md5}}


def test_rendered_seeds_name_their_secrets_instead_of_holding_them() -> None:
    files = seed_files(prod(), frozenset({"sabnzbd", "bazarr"}), SecretPlaceholders())
    text = "".join(files.values())
    assert "api_key = [secret sabnzbd-api-key]" in text and 'apikey: "[secret bazarr-api-key]"' in text


def test_seerr_gets_its_key_in_its_settings_as_its_own_user(tmp_path: Path) -> None:
    """Seerr merges settings.json over its defaults and keeps main.apiKey (seerr-team/seerr v3.1.0
    server/lib/settings/index.ts); it runs as the image's node user (1000), not as the stack's identity."""
    import json

    config = prod()
    enabled = frozenset({"seerr", "qbittorrent"})
    files = seed_files(config, enabled, SECRETS)
    path = f"/srv/media/config/seerr/{SEERR_SETTINGS}"
    assert json.loads(files[path]) == {"main": {"apiKey": "e" * 32}}
    assert seed_owners(config, enabled) == {path: "1000:1000"}
    assert seed_owners(config, frozenset({"qbittorrent"})) == {}
    script = seed_script(files, 1234, 1235, seed_owners(config, enabled))
    done = subprocess.run(["sh", "-c", script], env={**os.environ, "ROOT": str(tmp_path)}, capture_output=True)
    assert done.returncode == 0, done.stderr
    written = tmp_path / path.lstrip("/")
    assert json.loads(written.read_text())["main"]["apiKey"] == "e" * 32
    assert written.stat().st_mode & 0o777 == 0o600
    if os.getuid() == 0:  # the step runs as root on the host; the owners are what it chowns to
        assert (written.stat().st_uid, written.parent.stat().st_uid) == (1000, 1000)
        qbt = tmp_path / f"srv/media/config/qbittorrent/{QBITTORRENT_CONF}".lstrip("/")
        assert (qbt.stat().st_uid, qbt.stat().st_gid) == (1234, 1235)
