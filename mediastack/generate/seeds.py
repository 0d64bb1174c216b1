"""First-start config files for the apps that read no settings from the environment.

qBittorrent, SABnzbd and Bazarr keep their settings in a file they own and rewrite. The least fragile
way to start them right is to write that file before their first start, only when it is absent: after
that the file is the app's (and the user's) and the stack never touches it again. What is seeded:

- qBittorrent (`qBittorrent/qBittorrent.conf`): the web UI port (8090, so it can share a VPN namespace
  with SABnzbd), the save path in the one data tree (/data/torrents, so imports hardlink), no separate
  temp path, the global download and upload limits from `downloads` (KiB/s), localhost trusted by the
  web UI (the VPN's port-forwarding hook talks to it from inside the shared namespace), and the web UI
  login: user `admin` with the stack's generated password, stored as qBittorrent stores it
  (PBKDF2-HMAC-SHA512, 100000 rounds, 16-byte salt).
- SABnzbd (`sabnzbd.ini`): incomplete and complete folders in the data tree, `bandwidth_max` from
  `downloads.max_down` (MB/s; Usenet has no upload), the stack's generated API key, the host names
  it answers to (its container name for Sonarr and Radarr, its web host for Traefik), and its web
  login (`[misc] username`/`password`, sabnzbd 4.5.3 sabnzbd/cfg.py; a plain password is read as is).
- Bazarr (`config/config.yaml`): the stack's generated API key and its form login (`auth.type: form`,
  `auth.username`, `auth.password` as the MD5 hex Bazarr compares, bazarr 1.5 bazarr/app/config.py
  save_settings); Bazarr fills in every other default.
- Jellyfin (`system.xml`): `EnableMetrics`, off by default, which alone maps its Prometheus `/metrics`
  (jellyfin/jellyfin v10.11.2 Jellyfin.Server/Startup.cs). Jellyfin reads the file into its
  ServerConfiguration, every missing element keeping its default, and writes it back whole
  (Emby.Server.Implementations/AppBase/ConfigurationHelper.cs). An existing system.xml is left alone: turn
  "Enable Prometheus metrics" on in its dashboard (Networking) if it was installed before.
- Seerr (`settings.json` in /app/config): only `main.apiKey`, the stack's generated key, which its wiring
  uses. Seerr merges the file over its defaults on load (lodash `merge`), runs its settings migrations, and
  rewrites it whole (seerr-team/seerr v3.1.0 server/lib/settings/index.ts `load`, migrator.ts); a key in its
  environment (`API_KEY`) would override it but would show to anyone who can inspect the container. Written as
  Seerr's own user (the image's `USER node`, 1000), which rewrites it.

The script never overwrites an existing file and its delete leaves the files in place: they are app
state from the first start on. The files hold secrets, so they are written with mode 0600, and the
script itself is a Pulumi secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping

from mediastack.model.config import StackConfig
from mediastack.quoting import SHELLCHECK_LITERAL, ini_value, sh, sh_text, yaml_scalar

QBITTORRENT_CONF = "qBittorrent/qBittorrent.conf"
SABNZBD_INI = "sabnzbd.ini"
BAZARR_CONFIG = "config/config.yaml"
JELLYFIN_SYSTEM = "system.xml"  # JELLYFIN_CONFIG_DIR=/config in the linuxserver image
SEERR_SETTINGS = "settings.json"  # CONFIG_DIRECTORY unset: /app/config (server/lib/settings/index.ts)
QBITTORRENT_USER = "admin"
ADMIN_USER = "admin"  # every login the stack makes (docs/pipeline.md, Logins)
PBKDF2_ROUNDS = 100_000


PLACEHOLDER = "[secret {}]"


class SecretPlaceholders(dict[str, str]):
    """Names each secret instead of its value: for files written where secrets must not go (render)."""

    def __missing__(self, key: str) -> str:
        return PLACEHOLDER.format(key)


def qbittorrent_password_hash(password: str) -> str:
    """`WebUI\\Password_PBKDF2` as qBittorrent writes it. The salt is derived from the password, so the
    same password always seeds the same file (no diff on every `pulumi up`) and two stacks never share one."""
    salt = hashlib.sha256(b"mediastack qbittorrent salt " + password.encode()).digest()[:16]
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ROUNDS)
    return f"@ByteArray({base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()})"


def _kib(bits: int | None) -> int:
    return 0 if bits is None else max(bits // 8 // 1024, 1)  # 0 is unlimited in qBittorrent


def qbittorrent_conf(config: StackConfig, web_port: int, password: str) -> str:
    down, up = config.download_caps()
    # A placeholder (render) is shown as itself, not hashed into something that looks real.
    stored = password if password == PLACEHOLDER.format("qbittorrent-password") else qbittorrent_password_hash(password)
    return f"""[BitTorrent]
Session\\DefaultSavePath=/data/torrents
Session\\TempPathEnabled=false
Session\\GlobalDLSpeedLimit={_kib(down)}
Session\\GlobalUPSpeedLimit={_kib(up)}

[LegalNotice]
Accepted=true

[Preferences]
WebUI\\Port={web_port}
WebUI\\LocalHostAuth=false
WebUI\\Username={QBITTORRENT_USER}
WebUI\\Password_PBKDF2="{stored}"
"""


def sabnzbd_ini(config: StackConfig, api_key: str, web_host: str, password: str) -> str:
    down, _ = config.download_caps()
    limit = f"{max(down // 8 // 1_000_000, 1)}M" if down else ""
    return f"""[misc]
download_dir = /data/usenet/incomplete
complete_dir = /data/usenet/complete
bandwidth_max = {limit}
api_key = {ini_value(api_key)}
host_whitelist = sabnzbd, {ini_value(web_host)}
username = {ini_value(ADMIN_USER)}
password = {ini_value(password)}
"""


def bazarr_config(api_key: str, password: str) -> str:
    # A placeholder (render) is shown as itself, not hashed into something that looks real.
    stored = (
        password if password == PLACEHOLDER.format("bazarr-password") else hashlib.md5(password.encode()).hexdigest()
    )
    # Quoted: a hex key of digits only would otherwise be read back as a number.
    return f"""auth:
  apikey: {yaml_scalar(api_key)}
  type: form
  username: {yaml_scalar(ADMIN_USER)}
  password: {yaml_scalar(stored)}
"""


def jellyfin_system_xml() -> str:
    return """<?xml version="1.0" encoding="utf-8"?>
<ServerConfiguration xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <EnableMetrics>true</EnableMetrics>
</ServerConfiguration>
"""


def _seerr_settings_path(config: StackConfig) -> str:
    return f"{config.paths.config_root}/seerr/{SEERR_SETTINGS}"


def seerr_settings(api_key: str) -> str:
    return json.dumps({"main": {"apiKey": api_key}}, indent=1) + "\n"


def seeded_secret_ids(enabled: frozenset[str]) -> list[str]:
    """The generated secrets the seed files of these services hold."""
    from mediastack.catalog.services import CATALOG

    return [secret.id for name in sorted(enabled) for secret in CATALOG[name].seeded_secrets]


def seed_files(config: StackConfig, enabled: frozenset[str], secrets: Mapping[str, str]) -> dict[str, str]:
    """Host path -> content, for the enabled apps that take their first settings from a file."""
    from mediastack.catalog.services import CATALOG
    from mediastack.plan.routing import web_host_of

    root = config.paths.config_root
    files = {}
    if "qbittorrent" in enabled:
        web = CATALOG["qbittorrent"].web
        files[f"{root}/qbittorrent/{QBITTORRENT_CONF}"] = qbittorrent_conf(
            config, web.port if web else 8090, secrets["qbittorrent-password"]
        )
    if "sabnzbd" in enabled:
        files[f"{root}/sabnzbd/{SABNZBD_INI}"] = sabnzbd_ini(
            config, secrets["sabnzbd-api-key"], web_host_of(config, "sabnzbd"), secrets["sabnzbd-password"]
        )
    if "bazarr" in enabled:
        files[f"{root}/bazarr/{BAZARR_CONFIG}"] = bazarr_config(secrets["bazarr-api-key"], secrets["bazarr-password"])
    if "jellyfin" in enabled:
        files[f"{root}/jellyfin/{JELLYFIN_SYSTEM}"] = jellyfin_system_xml()
    if "seerr" in enabled:
        files[_seerr_settings_path(config)] = seerr_settings(secrets["seerr-api-key"])
    return files


def seed_owners(config: StackConfig, enabled: frozenset[str]) -> dict[str, str]:
    """Host path -> uid:gid, for the seed files of images that run as their own user rather than the stack's."""
    from mediastack.catalog.services import CATALOG

    user = CATALOG["seerr"].user
    return {_seerr_settings_path(config): user} if "seerr" in enabled and user else {}


def seed_script(files: dict[str, str], puid: int, pgid: int, owners: Mapping[str, str] | None = None) -> str:
    blocks = []
    for path, content in files.items():
        owner = (owners or {}).get(path, f"{puid}:{pgid}")
        blocks.append(
            f"""target="$ROOT"{sh(path)}
if [ -e "$target" ]; then
  kept=$((kept + 1))
else
  mkdir -p "$(dirname "$target")"
  {SHELLCHECK_LITERAL}  (umask 077 && {sh_text(content)} > "$target")
  if [ "$(id -u)" = 0 ]; then
    chown {owner} "$target" "$(dirname "$target")"
  fi
  written=$((written + 1))
fi
"""
        )
    return f"""#!/bin/sh
# mediastack: first-start settings for the apps that read none from the environment; an existing file is never touched.
set -eu
ROOT="${{ROOT:-}}"
written=0
kept=0
{"".join(blocks)}echo "seeds: $written written, $kept already there (left as they are)"
"""
