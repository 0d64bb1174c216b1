"""Where generated files land: inside their containers, and on the host for read-only-rootfs containers."""

from __future__ import annotations

import posixpath

from mediastack.catalog.services import TRAEFIK_DYNAMIC_DIR, Service
from mediastack.model.config import StackConfig
from mediastack.plan.replica_settings import PATHS as REPLICA_PATHS

# Where each generated file lands inside its container.
CONTAINER_PATHS = {
    "prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
    "alertmanager/alertmanager.yml": "/etc/alertmanager/alertmanager.yml",
    "prometheus/rules/mediastack.yml": "/etc/prometheus/rules/mediastack.yml",
    "blackbox/config.yml": "/etc/blackbox_exporter/config.yml",
    "artwork-cache/nginx.conf": "/etc/nginx/mediastack.conf",
    "traefik/dynamic/mediastack.yml": f"{TRAEFIK_DYNAMIC_DIR}/mediastack.yml",
    "grafana/provisioning/datasources/prometheus.yml": "/etc/grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/mediastack.yml": "/etc/grafana/provisioning/dashboards/mediastack.yml",
    "grafana/dashboards/mediastack-overview.json": "/etc/grafana/dashboards/mediastack-overview.json",
    "socket-proxy/haproxy.cfg": "/templates/haproxy.cfg",  # the template the image's entrypoint renders
    **REPLICA_PATHS,
    # Homepage reads its seven config files from /app/config (HOMEPAGE_CONFIG_DIR's default); a missing one is
    # copied from its skeleton, which a read-only directory refuses (src/utils/config/config.js at v1.12.3).
    **{
        f"homepage/{name}.yaml": f"/app/config/{name}.yaml"
        for name in ("settings", "services", "widgets", "bookmarks", "docker", "kubernetes", "proxmox")
    },
    "recyclarr/recyclarr.yml": "/config/configs/recyclarr.yml",
}


# Generated files for containers with a read-only root filesystem, on a single host: pulumi-docker copies
# `uploads` into the container after create and before start, which Docker refuses on a read-only rootfs. The
# host step writes them under <config_root>/generated/<service>/ and the container gets that DIRECTORY as a
# read-only bind (a directory, not single files: a file rewritten by rename is then seen inside, by watchers
# too). On a Swarm they are Swarm configs, except for the router: Traefik is pinned to one host (it publishes
# its ports in host mode) and binds its routes directory from there, so that the public routes can be added to
# it once the logins exist (a Swarm config cannot change, and a file added to a service's configs restarts it).
GENERATED = "generated"


def binds_generated_files(service: Service, config: StackConfig) -> bool:
    return (
        (service.read_only_rootfs or service.binds_files)
        and bool(service.uploads)
        and (not config.cluster or service.router)
    )


def generated_dir(service: Service) -> str:
    """The one container directory that holds every generated file the service receives."""
    return posixpath.commonpath([posixpath.dirname(CONTAINER_PATHS[path]) for path in service.uploads])


def generated_host_dir(config: StackConfig, service: Service) -> str:
    return f"{config.paths.config_root}/{GENERATED}/{service.name}"


def generated_host_path(config: StackConfig, service: Service, container_path: str) -> str:
    return f"{generated_host_dir(config, service)}/{posixpath.relpath(container_path, generated_dir(service))}"
