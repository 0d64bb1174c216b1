"""Where the backup tool keeps its state and metrics, and the checks resolution runs on the backup config."""

from __future__ import annotations

from mediastack.model.config import StackConfig
from mediastack.model.problems import Problem

STATE_DIR = "/var/lib/mediastack/restic"  # password, credentials, staging, status, restic's cache
METRICS_DIR = "/var/lib/mediastack/metrics"  # node-exporter's textfile collector reads *.prom here


def backup_problems(config: StackConfig) -> list[Problem]:
    """A local repository must not sit inside what it backs up, or inside the media."""
    repo = config.backups.repository
    if not repo:
        return []
    paths = config.paths
    for key in ("config_root", "photos_root"):
        if any(c.isspace() for c in getattr(paths, key)):
            return [Problem(f"mediastack:paths.{key}", getattr(paths, key), "backups need a path without whitespace")]
    if not repo.startswith("/"):
        return []
    for key in ("config_root", "data_root", "cache_root", "photos_root"):
        root = getattr(paths, key)
        if repo == root or repo.startswith(root + "/") or root.startswith(repo + "/"):
            return [
                Problem(
                    "mediastack:backups.repository",
                    repo,
                    f"overlaps paths.{key} ({root}); put the repository on another disk, e.g. /mnt/backup/mediastack",
                )
            ]
    if repo.startswith(STATE_DIR) or repo.startswith(METRICS_DIR):
        return [Problem("mediastack:backups.repository", repo, f"overlaps {STATE_DIR}; pick another directory")]
    return []


def textfile_flag() -> str:
    """node-exporter's flag for the textfile collector (it sees the host's / at /host)."""
    return f"--collector.textfile.directory=/host{METRICS_DIR}"
