"""Backups of every service's state, derived from the catalog, made consistent, and restorable.

Which services are backed up is not a list: it is every enabled catalog entry with `state`, each treated
by its kind.

- sqlite (the *arr apps, Jellyfin, Bazarr, the download clients, Grafana) and files (Traefik's
  certificates, Prometheus' completed blocks, Alertmanager, gluetun, Tdarr): the service's state
  directory, <config_root>/<service>. Every SQLite database found in it (by name, *.db, *.sqlite*, or a
  -wal/-journal beside it, then by header) is snapshotted first with SQLite's online backup API inside
  one read transaction, so the copy is a consistent point in time that writers do not restart (in WAL
  mode they go on writing; in rollback-journal mode they wait for it), and checked with `quick_check`;
  the live file and its -wal/-shm are excluded from the file set. The copy is made as the database's
  owner, so the app never finds a -shm file it cannot write.
- postgres (Immich's database): `pg_dump` (one repeatable-read transaction: consistent) before the
  snapshot; the live data directory is never copied.
- redis (Immich's Valkey, a job queue and so state, unlike the `redis` cache which has none): BGSAVE and
  wait for it, then its directory (the RDB file is replaced atomically, so the copy is whole).
- Immich's photo library (paths.photos_root): user data like media, included only with
  `backups.include_photos`, and then without its thumbnails and encoded videos (rebuilt by Immich).

Logs and caches inside state directories, the data tree (media) and cache_root are never backed up.

On the host this is `mediastack-backup` (a POSIX shell script: init, backup, snapshots, restore,
forget, prune, check, maintain), run by two systemd timers (backups on `backups.schedule`, prune and
check on `backups.check_schedule`), installed by a pulumi-command create/delete pair whose standard
input carries the repository password and credentials (never the plan). Every run writes a
node-exporter textfile; BackupTooOld fires when the last success is older than the schedule allows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from mediastack.catalog.services import MountKind
from mediastack.host.files import install_file, restore_file
from mediastack.host.scripts import script
from mediastack.model.calendar import format_duration, parse
from mediastack.model.config import StackConfig
from mediastack.plan.backup_checks import METRICS_DIR, STATE_DIR, backup_problems, textfile_flag  # noqa: F401  (re-exported)
from mediastack.quoting import sh
from mediastack_vocabulary import BACKUP_COVERS_MARKER

if TYPE_CHECKING:
    from mediastack.plan.resolved import ResolvedStack

NAME = "mediastack-backup"
TOOL = f"/usr/local/sbin/{NAME}"
METRICS_FILE = "mediastack_backup.prom"
# What the tool writes to the textfile (node-exporter exports it); alerts and dashboards may use these.
BACKUP_METRICS = (
    "mediastack_backup_installed_timestamp_seconds",
    "mediastack_backup_last_success_timestamp_seconds",
    "mediastack_backup_last_run_timestamp_seconds",
    "mediastack_backup_last_run_success",
    "mediastack_backup_last_duration_seconds",
    "mediastack_backup_last_size_bytes",
    "mediastack_backup_last_added_bytes",
    "mediastack_backup_service_last_success_timestamp_seconds",
    "mediastack_backup_check_last_run_timestamp_seconds",
    "mediastack_backup_check_last_run_success",
    "mediastack_backup_check_last_success_timestamp_seconds",
)
UNIT_DIR = "/etc/systemd/system"
TAG = "mediastack"
# The backup command resource names what it covers on one of its triggers; the policy reads it.
COVERS_MARKER = BACKUP_COVERS_MARKER
# Inside every state directory: what apps rebuild, and SQLite's side files (the database is staged instead).
GENERIC_EXCLUDES = ("log", "logs", "cache", "Cache", "transcodes", "*.log", "*.pid", "*-wal", "*-shm", "*-journal")
PHOTO_EXCLUDES = ("thumbs", "encoded-video")  # Immich rebuilds both from the originals
SEARCH_PATH_FIX = (
    "s/SELECT pg_catalog.set_config('search_path', '', false);/"
    "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/"
)


@dataclass(frozen=True)
class Covered:
    """One stateful service and how its state is backed up and restored."""

    service: str
    kind: str  # sqlite | postgres | redis | files
    files: tuple[str, ...]  # host directories in the snapshot, swapped whole on restore
    in_place: tuple[str, ...] = ()  # host directories restored in place (the photo library)
    excludes: tuple[str, ...] = ()  # restic exclude patterns
    clients: tuple[str, ...] = ()  # postgres: containers stopped while its dump is loaded
    db_user: str = ""
    db_name: str = ""
    cli: str = ""  # redis: the client its image has
    note: str = ""  # what is deliberately left out

    @property
    def method(self) -> str:
        return {
            "sqlite": "a consistent SQLite copy of each database (backups.sqlite_copy), then the directory",
            "postgres": "pg_dump (plain SQL), loaded back with psql",
            "redis": "BGSAVE, then the directory",
            "files": "the directory",
        }[self.kind]


def coverage(stack: ResolvedStack) -> list[Covered]:
    """Every enabled service with state, in catalog order (what others need first)."""
    config = stack.config
    paths = config.paths
    result = []
    for service in stack.services:
        spec = service.spec
        if spec.state is None:
            continue
        files: list[str] = []
        in_place: list[str] = []
        excludes: list[str] = []
        note = ""
        state_dir = f"{paths.config_root}/{spec.name}"
        if spec.state != "postgres" and any(m.kind is MountKind.state for m in spec.mounts):
            files.append(state_dir)
            excludes += [f"{state_dir}/{e}" for e in spec.backup_exclude]
        if any(m.kind is MountKind.photos for m in spec.mounts):
            if config.backups.include_photos:
                in_place.append(paths.photos_root)
                excludes += [f"{paths.photos_root}/{e}" for e in PHOTO_EXCLUDES]
            else:
                note = f"photo library ({paths.photos_root}) excluded: backups.include_photos is false"
        clients = tuple(s.name for s in stack.services if spec.name in s.spec.requires)
        cli = ""
        if spec.state == "redis":
            test = spec.health.test if spec.health else ()
            cli = test[1] if len(test) > 1 and test[1].endswith("-cli") else "redis-cli"
        user = spec.env.get("POSTGRES_USER", "postgres")
        result.append(
            Covered(
                service=spec.name,
                kind=spec.state,
                files=tuple(files),
                in_place=tuple(in_place),
                excludes=tuple(excludes),
                clients=clients if spec.state == "postgres" else (),
                db_user=user if spec.state == "postgres" else "",
                db_name=spec.env.get("POSTGRES_DB", user) if spec.state == "postgres" else "",
                cli=cli,
                note=note,
            )
        )
    return result


def covers_marker(covered: Sequence[Covered]) -> str:
    """What the backups cover, and what the stack config deliberately leaves out, for the policy pack."""
    names = ",".join(c.service for c in covered if c.files or c.in_place or c.kind == "postgres")
    excluded = ",".join(c.service for c in covered if not (c.files or c.in_place or c.kind == "postgres"))
    return f"{COVERS_MARKER}{names}" + (f";excluded={excluded}" if excluded else "")


# -- config checks across keys -----------------------------------------------------------------------


# -- the host tool ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupPlan:
    stack: str
    host: str
    repository: str
    covered: tuple[Covered, ...]
    config_root: str
    schedule: str
    check_schedule: str
    keep: tuple[str, ...]
    read_subset: str | None
    sqlite_copy: str = "vacuum-into"
    swarm: bool = False  # a Swarm node: a service's container is its task's, found by the service label

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(c.service for c in self.covered)


def backup_plan(stack: ResolvedStack, swarm: bool = False) -> BackupPlan | None:
    """What the host runs, or None when the stack config sets no repository."""
    backups = stack.config.backups
    if backups.repository is None:
        return None
    r = backups.retention
    keep = tuple(
        f"--keep-{unit} {n}"
        for unit, n in (("daily", r.daily), ("weekly", r.weekly), ("monthly", r.monthly), ("yearly", r.yearly))
        if n
    )
    return BackupPlan(
        stack=stack.stack,
        host=stack.config.host.name,
        repository=backups.repository,
        covered=tuple(coverage(stack)),
        config_root=stack.config.paths.config_root,
        schedule=backups.schedule,
        check_schedule=backups.check_schedule,
        keep=keep,
        read_subset=backups.check_read_data_subset,
        sqlite_copy=backups.sqlite_copy.value,
        swarm=swarm,
    )


def _q(value: str) -> str:
    return sh(value)


def _case(covered: Sequence[Covered], lines) -> str:
    """A `case "$1"` body: one branch per service with what `lines` returns (shell lines)."""
    out = []
    for c in covered:
        body = lines(c)
        if body:
            out.append(f"    {c.service})\n" + "".join(f"      {line}\n" for line in body) + "      ;;")
    out.append("    *) ;;")
    return "\n".join(out)


# On a Swarm node: a task's container is named <service>.<slot>.<task id>; find it by the service label.
_SWARM_TASK = """task() {
  id=$("$DOCKER" ps -q --filter "label=com.docker.swarm.service.name=$1" | head -n 1)
  printf '%s' "${id:-$1}"
}
"""
# Swarm restarts a stopped task at once, so a restore on a cluster is done by hand (docs/cluster.md).
_SWARM_RESTORE = """
  if [ "$("$DOCKER" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
    fail "on a Swarm node, scale the service to 0 on a manager (docker service scale NAME=0), restore its files \\
with 'mediastack-backup restic restore', then scale it back; see docs/cluster.md"
  fi"""


def backup_tool(plan: BackupPlan) -> str:
    """The script installed as /usr/local/sbin/mediastack-backup: backup_tool.sh with this stack's parameters
    (quoted words) and its per-service `case` branches in the places marked `#@name`."""
    covered = plan.covered
    # The container a command runs in: named after the service on one host, its local task's on a Swarm node.
    ref: Callable[[str], str] = (lambda name: f'"$(task {_q(name)})"') if plan.swarm else _q
    postgres = [c for c in covered if c.kind == "postgres"]
    excludes = [f"{plan.config_root}/**/{e}" for e in GENERIC_EXCLUDES]
    excludes += [e for c in covered for e in c.excludes]
    parameters = [
        f"REPOSITORY={_q(plan.repository)}",
        f"HOST_NAME={_q(plan.host)}",
        f"CONFIG_ROOT={_q(plan.config_root)}",
        f"SERVICES={_q(' '.join(plan.services))}",
        f"SQLITE_COPY={plan.sqlite_copy}",
        f"TAG={TAG}",
        f'STATE_DIR="${{MEDIASTACK_STATE_DIR:-{STATE_DIR}}}"',
        f'METRICS_DIR="${{MEDIASTACK_METRICS_DIR:-{METRICS_DIR}}}"',
        f"METRICS_FILE={_q(METRICS_FILE)}",
        f"KEEP={_q(' '.join(plan.keep))}",
        f"CHECK_OPTIONS={_q(f'--read-data-subset={plan.read_subset}' if plan.read_subset else '')}",
        f"EXCLUDES={_q(chr(10).join(excludes))}",
        f"SEARCH_PATH_FIX={_q(SEARCH_PATH_FIX)}",
        'DOCKER="${DOCKER:-docker}"',
    ]
    blocks = {
        "origin": f"# Stack {plan.stack}, host {plan.host}. Managed by mediastack (pulumi); see docs/backups.md.",
        "parameters": "\n".join(parameters) + ("\n" + _SWARM_TASK.rstrip("\n") if plan.swarm else ""),
        "kinds": "\n".join(f"    {c.service}) echo {c.kind} ;;" for c in covered),
        "files": _case(covered, lambda c: [f"echo {_q(p)}" for p in c.files]),
        "in_place": _case(covered, lambda c: [f"echo {_q(p)}" for p in c.in_place]),
        "clients": _case(covered, lambda c: [f"echo {_q(n)}" for n in c.clients]),
        "notes": _case(covered, lambda c: [f"echo {_q(c.note)}"] if c.note else []),
        "dump": _case(
            postgres,
            lambda c: [
                f'"$DOCKER" exec {ref(c.service)} pg_dump --username={_q(c.db_user)} --dbname={_q(c.db_name)} '
                "--clean --if-exists --no-password"
            ],
        ),
        "load": _case(
            postgres,
            lambda c: [
                f'"$DOCKER" exec -i {ref(c.service)} psql --username={_q(c.db_user)} --dbname={_q(c.db_name)} '
                "--no-psqlrc --quiet --single-transaction --set=ON_ERROR_STOP=1 >/dev/null"
            ],
        ),
        "ready": _case(
            postgres, lambda c: [f'"$DOCKER" exec {ref(c.service)} pg_isready --quiet --username={_q(c.db_user)}']
        ),
        "redis": _case(
            [c for c in covered if c.kind == "redis"], lambda c: [f'"$DOCKER" exec {ref(c.service)} {c.cli} "$@"']
        ),
        "swarm_restore": _SWARM_RESTORE.lstrip("\n") if plan.swarm else "",
    }
    return script("backup_tool.sh", blocks)


# -- systemd units, and the install -------------------------------------------------------------------


def backup_units(plan: BackupPlan) -> dict[str, str]:
    """The two oneshot services and their timers, by file name."""

    def service(what: str, command: str) -> str:
        return f"""[Unit]
Description=mediastack: {what}
Documentation=file:{TOOL}
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=oneshot
ExecStart={TOOL} {command}
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
"""

    def timer(what: str, calendar: str) -> str:
        return f"""[Unit]
Description=mediastack: {what}

[Timer]
OnCalendar={calendar}
# A run missed while the host was off happens at the next boot.
Persistent=true
AccuracySec=1min

[Install]
WantedBy=timers.target
"""

    return {
        f"{NAME}.service": service("back up every service's state (restic)", "backup"),
        f"{NAME}.timer": timer("backups on schedule", plan.schedule),
        f"{NAME}-check.service": service("prune and check the backup repository", "maintain"),
        f"{NAME}-check.timer": timer("backup repository checks on schedule", plan.check_schedule),
    }


def backup_create(plan: BackupPlan) -> str:
    """Install the tool and units, write the secrets from standard input, init the repository, start the timers."""
    files = install_file("tool", TOOL, backup_tool(plan), mode="755")
    for unit, content in backup_units(plan).items():
        files += install_file(unit, f"{UNIT_DIR}/{unit}", content)
    # backup_install.sh names NAME, TOOL and STATE_DIR itself (tests/test_layout.py checks that they agree).
    return script("backup_install.sh", {"files": files.removesuffix("\n")})


def backup_delete() -> str:
    """Stop the timers and remove the tool and units exactly; keep the repository and its password."""
    restore = restore_file("tool", TOOL)
    for unit in (f"{NAME}.service", f"{NAME}.timer", f"{NAME}-check.service", f"{NAME}-check.timer"):
        restore += restore_file(unit, f"{UNIT_DIR}/{unit}")
    return f"""#!/bin/sh
# mediastack: stop {NAME}'s timers and remove it; the repository, its password and credentials stay.
set -eu
ROOT="${{ROOT:-}}"
if [ -z "$ROOT" ]; then
  systemctl disable --now --quiet {NAME}.timer {NAME}-check.timer 2>/dev/null || true
fi
{restore}rm -f "$ROOT{METRICS_DIR}/{METRICS_FILE}"
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
fi
echo "backup: the repository and its password ($ROOT{STATE_DIR}/password) are kept"
"""


def backup_scripts(stack: ResolvedStack, swarm: bool = False) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under hosts/<host>/ (none without a repository)."""
    plan = backup_plan(stack, swarm=swarm)
    if plan is None:
        return {}
    return {
        f"{NAME}.sh": backup_tool(plan),
        **backup_units(plan),
        "backup-create.sh": backup_create(plan),
        "backup-delete.sh": backup_delete(),
    }


# -- alerts ----------------------------------------------------------------------------------------


def too_old_after(config: StackConfig) -> int:
    """Seconds after which the last successful backup is overdue: the schedule's longest gap plus the grace."""
    return parse(config.backups.schedule).max_gap_seconds() + int(config.backups.alert_grace_hours * 3600)


def backup_alerts(config: StackConfig) -> list[dict[str, Any]]:
    """Prometheus alert rules on the textfile metrics (node-exporter scrapes them, with the host label)."""
    limit = too_old_after(config)
    return [
        {
            "alert": "BackupTooOld",
            # Until the first success, the install time stands in, so a backup that never worked also fires.
            "expr": "time() - (max by (host) (mediastack_backup_last_success_timestamp_seconds)"
            f" or max by (host) (mediastack_backup_installed_timestamp_seconds)) > {limit}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "No complete backup of {{ $labels.host }} for {{ $value | humanizeDuration }}",
                "description": f"The schedule ({config.backups.schedule}) allows {format_duration(limit)}. "
                "`journalctl -u mediastack-backup` on the host says why; "
                "mediastack_backup_service_last_success_timestamp_seconds says which service.",
            },
        },
        {
            "alert": "BackupCheckFailed",
            "expr": "max by (host) (mediastack_backup_check_last_run_success) == 0",
            "for": "0m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "The backup repository of {{ $labels.host }} fails its integrity check",
                "description": "`journalctl -u mediastack-backup-check`; docs/backups.md, when the check fails.",
            },
        },
    ]


# -- the component ---------------------------------------------------------------------------------


def repository_credentials(config: StackConfig) -> list[tuple[str, str]]:
    backups = config.backups
    if backups.repository and backups.repository.startswith("s3:"):
        return [
            ("AWS_ACCESS_KEY_ID", backups.s3_access_key_id or ""),
            ("AWS_SECRET_ACCESS_KEY", backups.s3_secret_access_key or ""),
        ]
    return []


def stdin_text(password: str, credentials: Sequence[tuple[str, str]]) -> str:
    """The create script's standard input: the password on the first line, then NAME=value lines."""
    # One line each: the config refuses line breaks in the password and the keys; this holds it for any caller.
    if any(c in value for value in (password, *(v for _, v in credentials)) for c in "\r\n\x00"):
        raise ValueError("the backup password and S3 keys must be one line each (see backups.password)")
    return password + "\n" + "".join(f"{n}={v}\n" for n, v in credentials)


def secret_stdin(password: pulumi.Input[str], config: StackConfig) -> pulumi.Output[str]:
    """The create script's standard input: the password, then the credentials; a Pulumi secret throughout."""
    names = [name for name, _ in repository_credentials(config)]
    values = [pulumi.Output.secret(value) for _, value in repository_credentials(config)]

    def text(args: list[str]) -> str:
        pw, *creds = args
        return stdin_text(pw, list(zip(names, creds, strict=True)))

    return pulumi.Output.secret(pulumi.Output.all(password, *values).apply(text))


def repository_password(resource_name: str, config: StackConfig, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The repository password: `backups.password` when set (an existing repository), else generated; secret."""
    if config.backups.password:
        return pulumi.Output.secret(config.backups.password)
    import pulumi_random as random

    generated = random.RandomPassword(resource_name, length=48, special=False, opts=opts)
    return pulumi.Output.secret(generated.result)


@dataclass(frozen=True)
class StackBackupsArgs:
    stack: ResolvedStack
    depends_on: Sequence[pulumi.Resource] = ()
    # A cluster: every node backs its own services up into one repository, under one password, as a Swarm node.
    password: pulumi.Output[str] | None = None
    swarm: bool = False


class StackBackups(pulumi.ComponentResource):
    """The backup tool and its timers on the stack's host, with the repository password."""

    password: pulumi.Output[str]

    def __init__(self, name: str, args: StackBackupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:backup:StackBackups", name, None, opts)
        from mediastack.host.command import host_command

        plan = backup_plan(args.stack, swarm=args.swarm)
        assert plan is not None, "StackBackups needs backups.repository"
        config = args.stack.config
        child = pulumi.ResourceOptions(parent=self)
        self.password = (
            args.password if args.password is not None else repository_password(f"{name}-password", config, child)
        )
        self.install = host_command(
            f"{name}-install",
            config.host,
            backup_create(plan),
            backup_delete(),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            triggers=[covers_marker(plan.covered)],
            stdin=secret_stdin(self.password, config),
        )
        self.register_outputs({"covered": list(plan.services)})


def stack_backups(name: str, stack: ResolvedStack, opts: pulumi.ResourceOptions, depends_on=()) -> StackBackups | None:
    """The stack's backups, or None when the config sets no repository (the policy pack then objects)."""
    if stack.config.backups.repository is None:
        return None
    return StackBackups(name, StackBackupsArgs(stack=stack, depends_on=tuple(depends_on)), opts)
