"""The host directories the stack writes to, created with the right owner before any container starts.

Docker creates a missing bind-mount source as root:root, which is the classic cause of "permission
denied" in the *arr apps and of imports that silently copy instead of hardlinking. So the directory
tree (TRaSH layout under the data root, one config directory per service) is made by a script that
runs on the host: idempotent, and reverted by removing only the directories that are still empty.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from mediastack.generate.seeds import SecretPlaceholders, seed_files, seed_owners, seed_script, seeded_secret_ids
from mediastack.host.command import host_command, host_connection  # noqa: F401  (re-exported)
from mediastack.host.scripts import script
from mediastack.model.config import Host
from mediastack.plan.resolved import ResolvedStack, run_as
from mediastack.plan.secret_files import as_files, host_dir
from mediastack.quoting import sh
from mediastack_vocabulary import HOST_FILE_MARKER

# The TRaSH guides' single data tree: downloads and library on one filesystem, so moves are atomic
# and torrents can be hardlinked into the library while they keep seeding.
MEDIA_KINDS = ("movies", "tv", "music", "books")
DATA_DIRS = (
    *(f"torrents/{k}" for k in MEDIA_KINDS),
    *(f"usenet/incomplete/{k}" for k in MEDIA_KINDS),
    *(f"usenet/complete/{k}" for k in MEDIA_KINDS),
    *(f"media/{k}" for k in MEDIA_KINDS),
)


@dataclass(frozen=True)
class Directory:
    """One host directory the stack creates, with the owner and mode of whoever writes it."""

    path: str
    uid: int
    gid: int
    mode: int
    service: str = ""  # the service whose own directory this is ("" for the data tree and parents)

    @property
    def owner(self) -> str:
        return f"{self.uid}:{self.gid}"


def _service_dirs(stack: ResolvedStack) -> dict[str, Directory]:
    """Each service's own state, cache and photo directories, owned by the uid:gid its image writes as (from the
    image's facts: PUID for linuxserver images, 65534 for Prometheus, 999 for PostgreSQL, root for Immich...)."""
    paths, ident = stack.config.paths, stack.config.identity
    found: dict[str, Directory] = {}
    for service in stack.services:
        uid, gid = run_as(service.spec, stack.config)
        facts = service.spec.facts
        mode = facts.dir_mode if facts and facts.dir_mode is not None else _umask_mode(ident.umask)
        for mount in service.mounts:
            if mount.type == "bind" and (
                mount.source.startswith(paths.config_root + "/")
                or mount.source.startswith(paths.cache_root + "/")
                or mount.source == paths.photos_root
            ):
                if mount.read_only:  # generated files the host step writes as root, read by any user
                    found.setdefault(mount.source, Directory(mount.source, 0, 0, 0o755, service.name))
                else:
                    found.setdefault(mount.source, Directory(mount.source, uid, gid, mode, service.name))
    return found


def storage_plan(stack: ResolvedStack) -> list[Directory]:
    """Every host directory the enabled services bind, plus the data tree, parents first. The data tree and the
    parents belong to the stack's identity (PUID:PGID, mode from its umask); each service's own directory to the
    user its image writes as."""
    paths, ident = stack.config.paths, stack.config.identity
    shared = _umask_mode(ident.umask)
    own = _service_dirs(stack)
    dirs = {paths.data_root, *(f"{paths.data_root}/{d}" for d in DATA_DIRS), *own}
    expanded = set(dirs)
    for d in dirs:  # every ancestor too, so each `mkdir` has its parent (existing ones are left alone)
        parts = d.strip("/").split("/")
        expanded.update("/" + "/".join(parts[:i]) for i in range(1, len(parts)))
    return [
        own.get(path) or Directory(path, ident.puid, ident.pgid, shared)
        for path in sorted(expanded, key=lambda p: (p.count("/"), p))
    ]


def storage_directories(stack: ResolvedStack) -> list[str]:
    """Every host directory the enabled services bind, plus the data tree, parents first."""
    return [d.path for d in storage_plan(stack)]


def _umask_mode(umask: str) -> int:
    return 0o777 & ~int(umask, 8)


# Which directories the create step made (so the delete removes no directory that was there before). The two
# scripts, storage_create.sh and storage_delete.sh, name this path themselves.
CREATED_RECORD = "/var/lib/mediastack/created/storage"


def create_script(stack: ResolvedStack) -> str:
    """storage_create.sh with one `make_dir PATH UID:GID MODE repair|keep` line per directory, parents first."""
    ident = stack.config.identity
    paths = stack.config.paths
    lines = []
    for d in storage_plan(stack):
        # A service's own state or cache directory that exists with another owner is handed to the user its
        # image writes as (the directory itself, not what is in it); the photo library and the data tree are the
        # user's and left as they are.
        repair = "repair" if d.service and d.path != paths.photos_root else "keep"
        lines.append(f"make_dir {sh(d.path)} {d.owner} {d.mode:o} {repair}")
    origin = (
        f"# Creates the stack's missing host directories: the data tree owned by {ident.puid}:{ident.pgid}, "
        "each service's own"
    )
    return script("storage_create.sh", {"origin": origin, "directories": "\n".join(lines)})


def files_script(files: Mapping[str, str], secret_files: Mapping[str, tuple[str, int, int]] = {}) -> str:
    """Writes generated files (host path -> content; 0444, root's) and secret files (host path -> content, uid,
    gid; 0400, the reader's) for read-only-rootfs containers. Each is written beside its target and renamed over
    it, so a reader never sees half a file and a watcher of the (bound) directory sees the change."""
    blocks = []
    entries = [(path, content, "444", "") for path, content in sorted(files.items())]
    entries += [(path, content, "400", f"{uid}:{gid}") for path, (content, uid, gid) in sorted(secret_files.items())]
    for path, content, mode, owner in entries:
        encoded = base64.encodebytes(content.encode()).decode()
        chown = f'if [ "$(id -u)" = 0 ]; then\n  chown {owner} "$target.new"\nfi\n' if owner else ""
        blocks.append(
            f"""target="$ROOT"{sh(path)}
mkdir -p "$(dirname "$target")"
base64 -d > "$target.new" <<'{HOST_FILE_MARKER}'
{encoded}{HOST_FILE_MARKER}
chmod {mode} "$target.new"
{chown}mv -f "$target.new" "$target"
written=$((written + 1))
"""
        )
    return f"""#!/bin/sh
# mediastack: generated files for the containers with a read-only root filesystem (they bind the directory).
set -eu
ROOT="${{ROOT:-}}"
written=0
{"".join(blocks)}echo "files: $written written"
"""


def env_secret_files(stack: ResolvedStack, host: Host) -> dict[str, tuple[str, int, int]]:
    """Host path -> (secret id, uid, gid): on one host, each secret a service's image reads from a file, owned by
    the user the image reads it as (mediastack/plan/secret_files.py)."""
    config = stack.config
    if config.cluster:
        return {}  # Swarm secrets instead
    return {
        f"{host_dir(config, s.spec)}/{secret.id}": (secret.id, *run_as(s.spec, config))
        for s in stack.services
        if s.host.name == host.name
        for secret in as_files(s).values()
    }


def secret_files_script(files: Mapping[str, tuple[str, int, int]]) -> str:
    """files_script for secret files (0400, the reader's), and each one's directory made the reader's, 0700: only
    the image's user (and root) can list or read them."""
    dirs = {posixpath.dirname(path): (uid, gid) for path, (_, uid, gid) in files.items()}
    lines = [
        f'if [ "$(id -u)" = 0 ]; then\n  chown {uid}:{gid} "$ROOT"{sh(d)}\nfi\nchmod 700 "$ROOT"{sh(d)}\n'
        for d, (uid, gid) in sorted(dirs.items())
    ]
    text = files_script({}, files)
    head, tail = text.rsplit('echo "files:', 1)
    return head + "".join(lines) + 'echo "secret files:' + tail


def secret_files_delete(files: Mapping[str, object]) -> str:
    """Removes the secret files and their directories (and the secrets directory once empty)."""
    dirs = sorted({posixpath.dirname(path) for path in files})
    parents = sorted({posixpath.dirname(d) for d in dirs})
    removes = " ".join(f'"${{ROOT:-}}"{sh(path)}' for path in sorted(files))
    rmdirs = " ".join(f'"${{ROOT:-}}"{sh(d)}' for d in (*dirs, *parents))
    return f"rm -f {removes}; rmdir {rmdirs} 2>/dev/null; true"


def delete_script(stack: ResolvedStack) -> str:
    """storage_delete.sh over every directory, children first (only the empty ones it recorded go)."""
    dirs = " \\\n".join(f"  {sh(d)}" for d in reversed(storage_directories(stack)))
    return script("storage_delete.sh", {"directories": dirs})


@dataclass(frozen=True)
class HostStorageArgs:
    stack: ResolvedStack
    host: Host
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # generated secrets, by id
    after: Sequence[pulumi.Resource] = ()  # what must be in place first (on a cluster: the shared mount)
    # The whole stack's generated files, where `stack` is one host's view of a cluster (Traefik's routes name
    # every service, not only those on its host); None: generated from `stack`.
    files: Mapping[str, str] | None = None


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
                lambda values: seed_script(
                    seed_files(config, enabled, values), ident.puid, ident.pgid, seed_owners(config, enabled)
                )
            )
            host_command(
                f"{name}-seeds",
                args.host,
                pulumi.Output.secret(script),
                "echo 'seeds: the files are app state now; left in place'",
                pulumi.ResourceOptions(parent=self, depends_on=[run]),
            )
        env_files = env_secret_files(args.stack, args.host)
        if env_files:
            values = {sid: args.secrets[sid] for sid, _, _ in env_files.values()}
            # Secrets the images read from files instead of their environments (which Docker shows to anyone who
            # can inspect a container). The script that holds them travels on standard input, never in the
            # command line or the triggers; a digest of it (a secret too) runs the step again when one changes.
            script_text: pulumi.Output[str] = pulumi.Output.all(**values).apply(
                lambda v: secret_files_script({p: (v[sid], uid, gid) for p, (sid, uid, gid) in env_files.items()})
            )
            secret_text: pulumi.Output[str] = pulumi.Output.secret(script_text)
            host_command(
                f"{name}-secrets",
                args.host,
                "sh -s",
                secret_files_delete(env_files),
                pulumi.ResourceOptions(parent=self, depends_on=[run]),
                triggers=[pulumi.Output.secret(secret_text.apply(lambda t: hashlib.sha256(t.encode()).hexdigest()))],
                stdin=secret_text,
            )
        from mediastack.generate.files import config_secret_files, generated_host_path, host_generated_files

        stack = args.stack
        generated = host_generated_files(stack, args.files)
        if generated:
            # Only the files of the services that run on this host.
            here = {
                path: content
                for service in stack.services
                if service.host.name == args.host.name
                for path, content in generated.get(service.name, {}).items()
            }
            secrets: dict[str, tuple[pulumi.Input[str], int, int]] = {
                generated_host_path(config, s.spec, path): (content, *run_as(s.spec, config))
                for s in stack.services
                if s.name in generated and s.host.name == args.host.name
                for path, content in config_secret_files(config).get(s.name, {}).items()
            }
            # Generated secrets a service reads from files (the start page's widget keys): the value exactly.
            secrets.update(
                {
                    generated_host_path(config, s.spec, path): (args.secrets[secret.id], *run_as(s.spec, config))
                    for s in stack.services
                    if s.name in generated and s.host.name == args.host.name
                    for path, secret in s.secret_files.items()
                }
            )
            left = "echo 'files: left in place (a running container may bind their directory)'"
            if here:
                # In the open: the policy pack reads these (Traefik's routes, Prometheus' config) from the plan.
                host_command(
                    f"{name}-files",
                    args.host,
                    files_script(here),
                    left,
                    pulumi.ResourceOptions(parent=self, depends_on=[run]),
                )
            if secrets:
                # A step of their own, so that a secret (the SMTP password) does not hide the other files.
                paths = sorted(secrets)
                contents = pulumi.Output.all(*(secrets[p][0] for p in paths))
                script = contents.apply(
                    lambda vs: files_script({}, {p: (str(v), *secrets[p][1:]) for p, v in zip(paths, vs, strict=True)})
                )
                host_command(
                    f"{name}-secret-files",
                    args.host,
                    pulumi.Output.secret(script),
                    left,
                    pulumi.ResourceOptions(parent=self, depends_on=[run]),
                )
        self.ready = run
        self.stdout = run.stdout
        self.register_outputs({"stdout": self.stdout})
