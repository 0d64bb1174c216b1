"""First-start config files for the download clients, which read no settings from the environment.

qBittorrent and SABnzbd keep their settings in a file they own and rewrite. The least fragile way to
start them right is to write that file before their first start, only when it is absent: after that the
file is the app's (and the user's) and the stack never touches it again. What is seeded:

- qBittorrent (`qBittorrent/qBittorrent.conf`): the web UI port (8090, so it can share a VPN namespace
  with SABnzbd), the save path in the one data tree (/data/torrents, so imports hardlink), no separate
  temp path, the global download and upload limits from `downloads` (KiB/s), and localhost trusted by
  the web UI (the VPN's port-forwarding hook talks to it from inside the shared namespace).
- SABnzbd (`sabnzbd.ini`): incomplete and complete folders in the data tree, and `bandwidth_max` from
  `downloads.max_down` (MB/s; Usenet has no upload).

The script never overwrites an existing file and its delete leaves the files in place: they are app
state from the first start on.
"""

from __future__ import annotations

import shlex

from .config import StackConfig

QBITTORRENT_CONF = "qBittorrent/qBittorrent.conf"
SABNZBD_INI = "sabnzbd.ini"


def _kib(bits: int | None) -> int:
    return 0 if bits is None else max(bits // 8 // 1024, 1)  # 0 is unlimited in qBittorrent


def qbittorrent_conf(config: StackConfig, web_port: int) -> str:
    down, up = config.download_caps()
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
"""


def sabnzbd_ini(config: StackConfig) -> str:
    down, _ = config.download_caps()
    limit = f"{max(down // 8 // 1_000_000, 1)}M" if down else ""
    return f"""[misc]
download_dir = /data/usenet/incomplete
complete_dir = /data/usenet/complete
bandwidth_max = {limit}
"""


def seed_files(config: StackConfig, enabled: frozenset[str]) -> dict[str, str]:
    """Host path -> content, for the enabled download clients."""
    root = config.paths.config_root
    files = {}
    if "qbittorrent" in enabled:
        from .catalog import CATALOG

        web = CATALOG["qbittorrent"].web
        files[f"{root}/qbittorrent/{QBITTORRENT_CONF}"] = qbittorrent_conf(config, web.port if web else 8090)
    if "sabnzbd" in enabled:
        files[f"{root}/sabnzbd/{SABNZBD_INI}"] = sabnzbd_ini(config)
    return files


def seed_script(files: dict[str, str], puid: int, pgid: int) -> str:
    blocks = []
    for path, content in files.items():
        blocks.append(
            f"""target="$ROOT"{shlex.quote(path)}
if [ -e "$target" ]; then
  kept=$((kept + 1))
else
  mkdir -p "$(dirname "$target")"
  cat > "$target" <<'MEDIASTACK_SEED'
{content}MEDIASTACK_SEED
  if [ "$(id -u)" = 0 ]; then
    chown {puid}:{pgid} "$target" "$(dirname "$target")"
  fi
  written=$((written + 1))
fi
"""
        )
    return f"""#!/bin/sh
# mediastack: first-start settings for the download clients; an existing file is never touched.
set -eu
ROOT="${{ROOT:-}}"
written=0
kept=0
{"".join(blocks)}echo "seeds: $written written, $kept already there (left as they are)"
"""
