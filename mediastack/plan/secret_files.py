"""Secrets as files, not environment: where each service's secrets go and which variable names each file.

Docker shows a container's environment to whoever can inspect it (`GET /containers/{id}/json`, Config.Env), so a
secret an image can read from a file goes as a file, named by the variable the image documents for it (its facts'
`file_env`: linuxserver's FILE__KEY, KEY_FILE, Grafana's KEY__FILE, gluetun's KEY_SECRETFILE). On a Swarm the file
is a Swarm secret; on one host a host step writes it, readable by the image's user only, into a directory the
container binds read-only. Either way the container sees it at /run/secrets/<secret id>.
"""

from __future__ import annotations

from mediastack.catalog.services import Secret, Service
from mediastack.model.config import StackConfig
from mediastack.plan.resolved import ResolvedService

SECRETS_DIR = "/run/secrets"
SECRETS = "secrets"  # under the config root: <config_root>/secrets/<service>/<secret id>


def file_variable(service: Service, key: str) -> str | None:
    """The variable that names the file holding `key` for this service's image, or None when it has no file form."""
    return service.facts.file_variable(key) if service.facts else None


def container_path(secret: Secret) -> str:
    return f"{SECRETS_DIR}/{secret.id}"


def as_files(service: ResolvedService) -> dict[str, Secret]:
    """The secrets this service reads from files, by the variable that names each file."""
    found = {}
    for key, secret in sorted(service.secret_env.items()):
        variable = file_variable(service.spec, key)
        if variable is not None:
            found[variable] = secret
    return found


def in_environment(service: ResolvedService) -> dict[str, Secret]:
    """The secrets this service's image can only read from its environment, by variable."""
    return {k: s for k, s in sorted(service.secret_env.items()) if file_variable(service.spec, k) is None}


def host_dir(config: StackConfig, service: Service) -> str:
    """Where the host step writes a service's secret files on one host (bound read-only at SECRETS_DIR)."""
    return f"{config.paths.config_root}/{SECRETS}/{service.name}"
