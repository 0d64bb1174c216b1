"""The host directories the stack writes to, created with the right owner before any container starts.

Docker creates a missing bind-mount source as root:root, which is the classic cause of "permission
denied" in the *arr apps and of imports that silently copy instead of hardlinking. So the directory
tree (TRaSH layout under the data root, one config directory per service) is made by a script that
runs on the host: idempotent, and reverted by removing only the directories that are still empty.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from .config import Host
from .resolve import ResolvedStack
from .seeds import SecretPlaceholders, seed_files, seed_script, seeded_secret_ids

# The TRaSH guides' single data tree: downloads and library on one filesystem, so moves are atomic
# and torrents can be hardlinked into the library while they keep seeding.
MEDIA_KINDS = ("movies", "tv", "music", "books")
DATA_DIRS = (
    *(f"torrents/{k}" for k in MEDIA_KINDS),
    *(f"usenet/incomplete/{k}" for k in MEDIA_KINDS),
    *(f"usenet/complete/{k}" for k in MEDIA_KINDS),
    *(f"media/{k}" for k in MEDIA_KINDS),
)


def storage_directories(stack: ResolvedStack) -> list[str]:
    """Every host directory the enabled services bind, plus the data tree, parents first."""
    paths = stack.config.paths
    dirs = {paths.data_root, *(f"{paths.data_root}/{d}" for d in DATA_DIRS)}
    for service in stack.services:
        for mount in service.mounts:
            if mount.type == "bind" and (
                mount.source.startswith(paths.config_root + "/")
                or mount.source.startswith(paths.cache_root + "/")
                or mount.source == paths.photos_root
            ):
                dirs.add(mount.source)
    expanded = set(dirs)
    for d in dirs:  # every ancestor too, so each `mkdir` has its parent (existing ones are left alone)
        parts = d.strip("/").split("/")
        expanded.update("/" + "/".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(expanded, key=lambda p: (p.count("/"), p))


def _mode(umask: str) -> str:
    return format(0o777 & ~int(umask, 8), "03o")


def create_script(stack: ResolvedStack) -> str:
    ident = stack.config.identity
    dirs = " \\\n  ".join(shlex.quote(d) for d in storage_directories(stack))
    return f"""#!/bin/sh
# Creates the stack's missing host directories, owned by {ident.puid}:{ident.pgid}. Idempotent.
# ROOT prefixes every path (empty on a real host; a sandbox directory in tests).
set -eu
ROOT="${{ROOT:-}}"
changed=0
for dir in \\
  {dirs}
do
  target="$ROOT$dir"
  # Only what this script creates gets the stack's owner and mode; existing directories are the user's.
  if [ ! -d "$target" ]; then
    mkdir "$target"
    if [ "$(id -u)" = 0 ]; then
      chown {ident.puid}:{ident.pgid} "$target"
    fi
    chmod {_mode(ident.umask)} "$target"
    changed=$((changed + 1))
  fi
done
echo "storage: $changed directories created"
"""


def delete_script(stack: ResolvedStack) -> str:
    dirs = " \\\n  ".join(shlex.quote(d) for d in reversed(storage_directories(stack)))
    return f"""#!/bin/sh
# Removes the stack's host directories that are still empty; never touches data.
set -eu
ROOT="${{ROOT:-}}"
removed=0
for dir in \\
  {dirs}
do
  if [ -d "$ROOT$dir" ] && rmdir "$ROOT$dir" 2>/dev/null; then
    removed=$((removed + 1))
  fi
done
echo "storage: $removed empty directories removed"
"""


def host_connection(host: Host) -> command.remote.ConnectionArgs | None:
    """None for the machine running Pulumi; SSH (agent authentication) for any other."""
    if host.address in ("localhost", "127.0.0.1", "::1"):
        return None
    return command.remote.ConnectionArgs(host=host.address, user=host.ssh_user, port=22)


def host_command(
    name: str,
    host: Host,
    create: pulumi.Input[str],
    delete: str,
    opts: pulumi.ResourceOptions,
    triggers: Sequence[pulumi.Input[str]] = (),
    stdin: pulumi.Input[str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> command.local.Command | command.remote.Command:
    """A script pair that changes a host: local on the machine running Pulumi, over SSH elsewhere.

    The scripts are also the triggers (with any extra ones), so a changed script runs delete then create again:
    in that order, because the old delete restores what was there before the old create, and run after the new
    create it would undo it (Pulumi's default is to create the replacement first).
    `stdin` feeds the create script (a secret such as a join token stays out of the script and the triggers).
    """
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
    connection = host_connection(host)
    all_triggers = [create, delete, *triggers]
    if connection is None:
        return command.local.Command(
            name,
            create=create,
            delete=delete,
            triggers=all_triggers,
            interpreter=["/bin/sh", "-c"],
            stdin=stdin,
            environment=dict(environment) if environment else None,
            opts=opts,
        )
    return command.remote.Command(
        name,
        connection=connection,
        create=create,
        delete=delete,
        triggers=all_triggers,
        stdin=stdin,
        environment=dict(environment) if environment else None,
        opts=opts,
    )


@dataclass(frozen=True)
class HostStorageArgs:
    stack: ResolvedStack
    host: Host
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # generated secrets, by id
    after: Sequence[pulumi.Resource] = ()  # what must be in place first (on a cluster: the shared mount)


class HostStorage(pulumi.ComponentResource):
    """Prepares one host's directory tree (data root, configs, caches) for the stack."""

    stdout: pulumi.Output[str]

    def __init__(self, name: str, args: HostStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:storage:HostStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        run = host_command(
            f"{name}-dirs",
            args.host,
            create_script(args.stack),
            delete_script(args.stack),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.after)) if args.after else child,
        )
        config, enabled = args.stack.config, args.stack.enabled
        if seed_files(config, enabled, SecretPlaceholders()):
            ident = config.identity
            needed = {sid: args.secrets[sid] for sid in seeded_secret_ids(enabled)}
            # The files carry generated keys: the script is built inside an apply and stays a secret.
            script = pulumi.Output.all(**needed).apply(
                lambda values: seed_script(seed_files(config, enabled, values), ident.puid, ident.pgid)
            )
            host_command(
                f"{name}-seeds",
                args.host,
                pulumi.Output.secret(script),
                "echo 'seeds: the files are app state now; left in place'",
                pulumi.ResourceOptions(parent=self, depends_on=[run]),
            )
        self.ready = run
        self.stdout = run.stdout
        self.register_outputs({"stdout": self.stdout})
