"""Synthetic cluster configs of any size, for the scale test and the plan benchmark."""

from __future__ import annotations

from typing import Any


def synthetic_cluster(hosts: int) -> dict[str, Any]:
    """A cluster stack config (keys without the `mediastack:` namespace) with `hosts` hosts: three managers
    that hold the GlusterFS bricks, an Intel GPU on every tenth host, the whole catalog."""
    if hosts < 3:
        raise ValueError("a synthetic cluster has at least three hosts (three managers)")
    nodes = []
    for i in range(hosts):
        node: dict[str, Any] = {
            "name": f"node{i + 1}",
            "address": f"10.20.{i // 250}.{i % 250 + 1}",
            "cpus": 8,
            "memory": "32GiB",
            "ssh_user": "deploy",
            "roles": ["manager", "worker", "storage"] if i < 3 else ["worker"],
        }
        if i % 10 == 0:
            node.update({"gpu": "intel", "render_gid": 105})
        nodes.append(node)
    return {
        "domain": "media.example.org",
        "hosts": nodes,
        "storage": {"kind": "glusterfs", "mount_point": "/mnt/mediastack"},
        "paths": {
            "data_root": "/mnt/mediastack/data",
            "photos_root": "/mnt/mediastack/photos",
            "config_root": "/srv/media/config",
            "cache_root": "/srv/media/cache",
        },
        "downloads": {"max_down": "400mbit", "max_up": "16mbit"},
        "backups": {"repository": "sftp:restic@backup.example.org:/srv/restic/synthetic"},
        # Spread the state: databases on the second manager, monitoring on the third.
        "services": {
            name: {"host": host}
            for name, host in (
                ("immich-postgres", "node2"),
                ("immich-redis", "node2"),
                ("prometheus", "node3"),
                ("alertmanager", "node3"),
                ("grafana", "node3"),
            )
        },
    }
