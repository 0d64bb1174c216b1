"""Secrets as files, not environment: where each service's secrets go and which variable names each file.

Docker shows a container's environment to whoever can inspect it (`GET /containers/{id}/json`, Config.Env), so a
secret an image can read from a file goes as a file, named by the variable the image documents for it (its facts'
`file_env`: linuxserver's FILE__KEY, KEY_FILE, Grafana's KEY__FILE, gluetun's KEY_SECRETFILE). On a Swarm the file
is a Swarm secret; on one host a host step writes it, readable by the image's user only, into a directory the
container binds read-only. Either way the container sees it at /run/secrets/<secret id>. An image may instead take
the path in the variable itself (Unpackerr's `filepath:` prefix), or read a file its generated config names
(Recyclarr's `!file`).
"""

from __future__ import annotations

from mediastack.catalog.services import Secret, Service
from mediastack.model.config import StackConfig
from mediastack.plan.resolved import ResolvedService

SECRETS_DIR = "/run/secrets"
SECRETS = "secrets"  # under the config root: <config_root>/secrets/<service>/<secret id>


def reads_from_file(service: Service, key: str) -> bool:
    """Whether this service's image can read `key`'s value from a file."""
    return service.facts is not None and service.facts.file_form(key) is not None


def container_path(secret: Secret) -> str:
    return f"{SECRETS_DIR}/{secret.id}"


def env_line(service: Service, key: str, secret: Secret) -> tuple[str, str] | None:
    """The (variable, value) that points the image at the file of `key`'s secret; None when the service's
    generated config names the file itself."""
    return service.facts.file_env_line(key, container_path(secret)) if service.facts else None


def as_files(service: ResolvedService) -> dict[str, Secret]:
    """The secrets this service reads from files, by their key in its secret_env."""
    return {k: s for k, s in sorted(service.secret_env.items()) if reads_from_file(service.spec, k)}


def file_env(service: ResolvedService) -> list[str]:
    """KEY=value lines that point the image at its secret files."""
    lines = [env_line(service.spec, key, secret) for key, secret in as_files(service).items()]
    return [f"{line[0]}={line[1]}" for line in lines if line is not None]


def in_environment(service: ResolvedService) -> dict[str, Secret]:
    """The secrets this service's image can only read from its environment, by variable."""
    return {k: s for k, s in sorted(service.secret_env.items()) if not reads_from_file(service.spec, k)}


def host_dir(config: StackConfig, service: Service) -> str:
    """Where the host step writes a service's secret files on one host (bound read-only at SECRETS_DIR)."""
    return f"{config.paths.config_root}/{SECRETS}/{service.name}"
