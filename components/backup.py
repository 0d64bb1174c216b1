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

from mediastack_vocabulary import BACKUP_COVERS_MARKER

from .backup_checks import METRICS_DIR, STATE_DIR, backup_problems, textfile_flag  # noqa: F401  (re-exported)
from .calendar import format_duration, parse
from .catalog import MountKind
from .config import StackConfig
from .host_files import install_file, restore_file
from .quoting import sh

if TYPE_CHECKING:
    from .resolve import ResolvedStack

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
            "sqlite": "SQLite online backup of each database, then the directory",
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
    sqlite_copy: str = "online-backup"
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
    """The script installed as /usr/local/sbin/mediastack-backup."""
    covered = plan.covered
    # The container a command runs in: named after the service on one host, its local task's on a Swarm node.
    ref: Callable[[str], str] = (lambda name: f'"$(task {_q(name)})"') if plan.swarm else _q
    swarm_restore = _SWARM_RESTORE if plan.swarm else ""
    kinds = "\n".join(f"    {c.service}) echo {c.kind} ;;" for c in covered)
    files = _case(covered, lambda c: [f"echo {_q(p)}" for p in c.files])
    in_place = _case(covered, lambda c: [f"echo {_q(p)}" for p in c.in_place])
    clients = _case(covered, lambda c: [f"echo {_q(n)}" for n in c.clients])
    notes = _case(covered, lambda c: [f"echo {_q(c.note)}"] if c.note else [])
    dump = _case(
        [c for c in covered if c.kind == "postgres"],
        lambda c: [
            f'"$DOCKER" exec {ref(c.service)} pg_dump --username={_q(c.db_user)} --dbname={_q(c.db_name)} '
            "--clean --if-exists --no-password"
        ],
    )
    load = _case(
        [c for c in covered if c.kind == "postgres"],
        lambda c: [
            f'"$DOCKER" exec -i {ref(c.service)} psql --username={_q(c.db_user)} --dbname={_q(c.db_name)} '
            "--no-psqlrc --quiet --single-transaction --set=ON_ERROR_STOP=1 >/dev/null"
        ],
    )
    ready = _case(
        [c for c in covered if c.kind == "postgres"],
        lambda c: [f'"$DOCKER" exec {ref(c.service)} pg_isready --quiet --username={_q(c.db_user)}'],
    )
    redis = _case(
        [c for c in covered if c.kind == "redis"], lambda c: [f'"$DOCKER" exec {ref(c.service)} {c.cli} "$@"']
    )
    excludes = [f"{plan.config_root}/**/{e}" for e in GENERIC_EXCLUDES]
    excludes += [e for c in covered for e in c.excludes]
    exclude_words = " ".join(sh(e) for e in excludes)
    keep = " ".join(plan.keep)
    subset = f" --read-data-subset={plan.read_subset}" if plan.read_subset else ""
    services = " ".join(plan.services)
    return f"""#!/bin/sh
# mediastack-backup: consistent backups of every service's state (restic), and their restore.
# Stack {plan.stack}, host {plan.host}. Managed by mediastack (pulumi); see components/backup.py, docs/backups.md.
#
# Usage: mediastack-backup backup              snapshot every service's state (what the timer runs)
#        mediastack-backup snapshots [ARGS]    list the snapshots (restic snapshots ARGS)
#        mediastack-backup restore SERVICE|all [SNAPSHOT]
#                                              put a service's state (or all) back from a snapshot (default latest)
#        mediastack-backup services            what is covered, and how
#        mediastack-backup forget | prune | check | maintain (prune, then check: what the check timer runs)
#        mediastack-backup init                create the repository if there is none (the install runs it)
#        mediastack-backup restic ARGS...      any restic command on this repository
# Paths never hold whitespace (the stack config refuses them); unquoted lists are split, never globbed.
set -euf

REPOSITORY={_q(plan.repository)}
HOST_NAME={_q(plan.host)}
CONFIG_ROOT={_q(plan.config_root)}
SERVICES={_q(services)}
SQLITE_COPY={plan.sqlite_copy}
TAG={TAG}
STATE_DIR="${{MEDIASTACK_STATE_DIR:-{STATE_DIR}}}"
METRICS_DIR="${{MEDIASTACK_METRICS_DIR:-{METRICS_DIR}}}"
DOCKER="${{DOCKER:-docker}}"
{_SWARM_TASK if plan.swarm else ""}RESTIC="${{RESTIC:-restic}}"
SQLITE3="${{SQLITE3:-sqlite3}}"
STAGE="$STATE_DIR/staging"

service_kind() {{
  case "$1" in
{kinds}
    *) echo "mediastack-backup: $1 is not a covered service; covered: $SERVICES" >&2; return 1 ;;
  esac
}}

# Directories restored by swapping the whole directory (the old one is kept beside it).
service_files() {{
  case "$1" in
{files}
  esac
}}

# Directories restored in place (large user data: files are put back, nothing is removed).
service_in_place() {{
  case "$1" in
{in_place}
  esac
}}

# Containers that use a database and are stopped while its dump is loaded.
service_clients() {{
  case "$1" in
{clients}
  esac
}}

service_note() {{
  case "$1" in
{notes}
  esac
}}

postgres_dump() {{
  if [ -n "${{MEDIASTACK_PG_DUMP:-}}" ]; then
    SERVICE="$1" sh -c "$MEDIASTACK_PG_DUMP"
    return
  fi
  case "$1" in
{dump}
  esac
}}

postgres_load() {{
  if [ -n "${{MEDIASTACK_PG_RESTORE:-}}" ]; then
    SERVICE="$1" sh -c "$MEDIASTACK_PG_RESTORE"
    return
  fi
  case "$1" in
{load}
  esac
}}

postgres_ready() {{
  if [ -n "${{MEDIASTACK_PG_RESTORE:-}}" ]; then
    return 0
  fi
  case "$1" in
{ready}
  esac
}}

redis_cli() {{
  service=$1
  shift
  if [ -n "${{MEDIASTACK_REDIS_CLI:-}}" ]; then
    sh -c "$MEDIASTACK_REDIS_CLI \\"\\$@\\"" redis-cli "$@"
    return
  fi
  case "$service" in
{redis}
  esac
}}

say() {{
  echo "mediastack-backup: $*"
}}

fail() {{
  echo "mediastack-backup: $*" >&2
  exit 1
}}

restic_() {{
  # The credentials file is NAME=value lines, read as data (never sourced: a value is never shell).
  if [ -f "$STATE_DIR/env" ]; then
    while IFS= read -r assignment; do
      case "$assignment" in
        AWS_ACCESS_KEY_ID=*) AWS_ACCESS_KEY_ID=${{assignment#*=}}; export AWS_ACCESS_KEY_ID ;;
        AWS_SECRET_ACCESS_KEY=*) AWS_SECRET_ACCESS_KEY=${{assignment#*=}}; export AWS_SECRET_ACCESS_KEY ;;
        *) ;;
      esac
    done < "$STATE_DIR/env"
  fi
  [ -s "$STATE_DIR/password" ] || fail "no repository password in $STATE_DIR/password (pulumi up writes it)"
  "$RESTIC" --repo "$REPOSITORY" --password-file "$STATE_DIR/password" --cache-dir "$STATE_DIR/cache" "$@"
}}

lock() {{
  mkdir -p "$STATE_DIR"
  chmod 711 "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    fail "another mediastack-backup run holds $STATE_DIR/lock"
  fi
}}

# -- status and metrics (node-exporter textfile) -------------------------------------------------------

var_of() {{
  printf 'SERVICE_%s' "$1" | tr -c 'A-Za-z0-9_' '_'
}}

load_status() {{
  INSTALLED=""
  LAST_SUCCESS=""
  LAST_RUN=""
  LAST_RUN_OK=""
  LAST_DURATION=""
  LAST_SIZE=""
  LAST_ADDED=""
  CHECK_RUN=""
  CHECK_OK=""
  CHECK_SUCCESS=""
  if [ -f "$STATE_DIR/status" ]; then
    # shellcheck disable=SC1091
    . "$STATE_DIR/status"
  fi
}}

save_status() {{
  {{
    for key in INSTALLED LAST_SUCCESS LAST_RUN LAST_RUN_OK LAST_DURATION LAST_SIZE LAST_ADDED \\
      CHECK_RUN CHECK_OK CHECK_SUCCESS; do
      eval "value=\\${{$key:-}}"
      printf '%s=%s\\n' "$key" "$value"
    done
    for s in $SERVICES; do
      var=$(var_of "$s")
      eval "value=\\${{$var:-}}"
      printf '%s=%s\\n' "$var" "$value"
    done
  }} > "$STATE_DIR/status.new"
  mv "$STATE_DIR/status.new" "$STATE_DIR/status"
}}

metric() {{
  # name, help, value: one gauge, written only when it has a value
  if [ -n "$3" ]; then
    printf '# HELP %s %s\\n# TYPE %s gauge\\n%s %s\\n' "$1" "$2" "$1" "$1" "$3"
  fi
}}

write_metrics() {{
  mkdir -p "$METRICS_DIR"
  chmod 755 "$METRICS_DIR"
  tmp="$METRICS_DIR/.{METRICS_FILE}.$$"
  {{
    metric mediastack_backup_installed_timestamp_seconds "When mediastack-backup was installed." "$INSTALLED"
    metric mediastack_backup_last_success_timestamp_seconds \\
      "Start of the last backup in which every covered service was backed up." "$LAST_SUCCESS"
    metric mediastack_backup_last_run_timestamp_seconds "Start of the last backup run." "$LAST_RUN"
    metric mediastack_backup_last_run_success "1 if the last backup run backed up every service." "$LAST_RUN_OK"
    metric mediastack_backup_last_duration_seconds "Duration of the last successful backup." "$LAST_DURATION"
    metric mediastack_backup_last_size_bytes "Size of the state in the last successful snapshot." "$LAST_SIZE"
    metric mediastack_backup_last_added_bytes \\
      "What the last successful backup added to the repository (after deduplication)." "$LAST_ADDED"
    metric mediastack_backup_check_last_run_timestamp_seconds "Start of the last repository check." "$CHECK_RUN"
    metric mediastack_backup_check_last_run_success "1 if the last repository check passed." "$CHECK_OK"
    metric mediastack_backup_check_last_success_timestamp_seconds "Start of the last passed check." "$CHECK_SUCCESS"
    printf '# HELP mediastack_backup_service_last_success_timestamp_seconds %s\\n' \\
      "Start of the last backup that included this service's state."
    printf '# TYPE mediastack_backup_service_last_success_timestamp_seconds gauge\\n'
    for s in $SERVICES; do
      eval "value=\\${{$(var_of "$s"):-}}"
      if [ -n "$value" ]; then
        printf 'mediastack_backup_service_last_success_timestamp_seconds{{service="%s"}} %s\\n' "$s" "$value"
      fi
    done
  }} > "$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$METRICS_DIR/{METRICS_FILE}"
}}

# -- consistency steps, before the snapshot ----------------------------------------------------------

as_owner() {{
  # Run as the database file's owner (root runs it as that user), so SQLite never leaves a root-owned
  # -wal or -shm file the app cannot open.
  if [ -n "$owner" ]; then
    setpriv --reuid="$owner" --regid="$group" --clear-groups "$@"
  else
    "$@"
  fi
}}

snapshot_sqlite() {{
  db=$1
  dest="$STAGE/sqlite$db"
  owner=""
  group=""
  work="$STAGE/work"
  rm -rf "$work" && mkdir -m 700 "$work" || return 1
  if [ "$(id -u)" = 0 ] && [ "$(stat -c %u "$db")" != 0 ]; then
    owner=$(stat -c %u "$db")
    group=$(stat -c %g "$db")
    chown "$owner:$group" "$work" || return 1
  fi
  # SQLite's online backup inside one read transaction: a consistent point in time. In WAL mode writers go
  # on (and cannot make it restart); in rollback-journal mode they wait for it, up to their busy timeout.
  # VACUUM INTO is one read transaction by itself, with the same guarantee.
  if [ "$SQLITE_COPY" = vacuum-into ]; then
    copy=$(printf ".timeout 120000\\nVACUUM INTO '%s';" "$work/copy.db")
  else
    copy=$(printf ".timeout 120000\\nBEGIN;\\nSELECT count(*) FROM sqlite_schema;\\n.backup '%s'\\nCOMMIT;" \\
      "$work/copy.db")
  fi
  if ! printf '%s\\n' "$copy" | as_owner "$SQLITE3" -bail -init /dev/null "$db" >/dev/null; then
    echo "mediastack-backup: $db: the SQLite copy ($SQLITE_COPY) failed" >&2
    return 1
  fi
  check=$(as_owner "$SQLITE3" -init /dev/null "$work/copy.db" 'PRAGMA quick_check;' 2>&1) || true
  if [ "$check" != ok ]; then
    echo "mediastack-backup: $db: the copy fails quick_check: $check" >&2
    return 1
  fi
  mkdir -p "$(dirname "$dest")" && mv "$work/copy.db" "$dest" && rm -rf "$work"
}}

stage_sqlite_in() {{
  # Every SQLite database under $1: by name, or by a -wal/-journal beside it; then by its header.
  find "$1" \\( -name log -o -name logs -o -name cache -o -name Cache -o -name transcodes \\) -prune -o -type f \\
    \\( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' -o -name '*.db3' \\
    -o -name '*-wal' -o -name '*-journal' \\) -print \\
    | sed -e 's/-wal$//' -e 's/-journal$//' | sort -u > "$STATE_DIR/databases" || return 1
  rc=0
  while IFS= read -r db; do
    [ -f "$db" ] || continue
    [ "$(head -c 15 "$db" 2>/dev/null)" = "SQLite format 3" ] || continue
    # the live file never enters the snapshot; its consistent copy does
    printf '%s\\n' "$db" | sed 's/[][*?\\\\]/\\\\&/g' >> "$STATE_DIR/excludes"
    if ! snapshot_sqlite "$db"; then
      rc=1
    fi
  done < "$STATE_DIR/databases"
  return "$rc"
}}

stage_postgres() {{
  dest="$STAGE/postgres/$1.sql"
  if ! postgres_dump "$1" > "$dest.partial"; then
    echo "mediastack-backup: $1: pg_dump failed" >&2
    return 1
  fi
  if ! tail -n 5 "$dest.partial" | grep -q 'PostgreSQL database dump complete'; then
    echo "mediastack-backup: $1: the dump is incomplete" >&2
    return 1
  fi
  mv "$dest.partial" "$dest" || return 1
}}

stage_redis() {{
  # BGSAVE writes a new RDB file and renames it over the old one: once LASTSAVE reaches our request, the
  # file on disk is whole and recent.
  asked=$(date +%s)
  redis_cli "$1" BGSAVE >/dev/null 2>&1 || true
  waited=0
  while [ "$waited" -lt 600 ]; do
    last=$(redis_cli "$1" LASTSAVE 2>/dev/null | tr -dc 0-9) || last=""
    if [ -n "$last" ] && [ "$last" -ge "$asked" ]; then
      return 0
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "mediastack-backup: $1: BGSAVE did not finish in 600 s" >&2
  return 1
}}

stage_service() {{
  s=$1
  kind=$(service_kind "$s")
  case "$kind" in
    postgres) stage_postgres "$s" || return 1 ;;
    redis) stage_redis "$s" || return 1 ;;
  esac
  failed_here=0
  for dir in $(service_files "$s") $(service_in_place "$s"); do
    if [ -e "$dir" ]; then
      printf '%s\\n' "$dir" >> "$STATE_DIR/files"
    else
      say "$s: $dir does not exist yet; nothing to back up there"
    fi
  done
  for dir in $(service_files "$s"); do
    if [ -d "$dir" ] && ! stage_sqlite_in "$dir"; then
      failed_here=1
    fi
  done
  return "$failed_here"
}}

backup() {{
  lock
  load_status
  started=$(date +%s)
  LAST_RUN=$started
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  chmod 711 "$STAGE"
  mkdir -m 700 "$STAGE/sqlite" "$STAGE/postgres"
  printf '%s\\n' {exclude_words} > "$STATE_DIR/excludes"
  : > "$STATE_DIR/files"
  ok=""
  failed=""
  for s in $SERVICES; do
    if stage_service "$s"; then
      ok="$ok $s"
      say "$s: ready ($(service_kind "$s"))"
    else
      failed="$failed $s"
    fi
  done
  printf '%s\\n' "$STAGE" >> "$STATE_DIR/files"
  set -- --host "$HOST_NAME" --tag "$TAG" --exclude-file "$STATE_DIR/excludes" \\
    --files-from-verbatim "$STATE_DIR/files" --json --quiet
  if [ -n "${{MEDIASTACK_BACKUP_TIME:-}}" ]; then
    set -- "$@" --time "$MEDIASTACK_BACKUP_TIME"
  fi
  rc=0
  restic_ backup "$@" > "$STATE_DIR/summary.json" || rc=$?
  summary=$(grep '"message_type":"summary"' "$STATE_DIR/summary.json" || true)
  snapshot=$(printf '%s' "$summary" | sed -n 's/.*"snapshot_id":"\\([0-9a-f]*\\)".*/\\1/p')
  rm -rf "$STAGE"
  ended=$(date +%s)
  if [ "$rc" != 0 ] || [ -z "$snapshot" ]; then
    LAST_RUN_OK=0
    save_status
    write_metrics
    fail "restic backup failed (exit $rc); nothing new is in the repository"
  fi
  for s in $ok; do
    eval "$(var_of "$s")=$started"
  done
  if [ -n "$failed" ]; then
    LAST_RUN_OK=0
    save_status
    write_metrics
    fail "snapshot $snapshot is missing$failed (see above); the others are in it"
  fi
  LAST_SUCCESS=$started
  LAST_RUN_OK=1
  LAST_DURATION=$((ended - started))
  LAST_SIZE=$(printf '%s' "$summary" | sed -n 's/.*"total_bytes_processed":\\([0-9]*\\).*/\\1/p')
  LAST_ADDED=$(printf '%s' "$summary" | sed -n 's/.*"data_added":\\([0-9]*\\).*/\\1/p')
  save_status
  write_metrics
  say "snapshot $snapshot: $LAST_SIZE bytes of state, $LAST_ADDED added to the repository, $LAST_DURATION s"
  restic_ forget --host "$HOST_NAME" --tag "$TAG" --group-by host,tags {keep}
}}

# -- restore ---------------------------------------------------------------------------------------

stop_container() {{
  case " $stopped " in
    *" $1 "*) return 0 ;;
  esac
  if "$DOCKER" inspect "$1" >/dev/null 2>&1; then
    say "stopping $1"
    "$DOCKER" stop --time 120 "$1" >/dev/null
    stopped="$stopped $1"
  fi
}}

restore() {{
  target=${{1:-}}
  snapshot=${{2:-latest}}
  [ -n "$target" ] || fail "usage: mediastack-backup restore SERVICE|all [SNAPSHOT]"{swarm_restore}
  if [ "$target" = all ]; then
    chosen=$SERVICES
  else
    service_kind "$target" >/dev/null || exit 2
    chosen=$target
  fi
  lock
  stamp=$(date +%Y%m%d-%H%M%S)
  # The media user owns CONFIG_ROOT and may swap a name for a symlink between a check and a use. So the work
  # directory is made afresh (mkdir neither follows nor reuses what is there) and from then on reached only
  # through the working directory, never by its name: renaming it or planting a link changes nothing here.
  work_path="$CONFIG_ROOT/.mediastack-restore"
  rm -rf "$work_path"
  mkdir -m 700 "$work_path" || fail "could not create $work_path afresh"
  cd "$work_path"
  work=.
  # 1. Fetch everything first: if that fails, nothing has been touched.
  set --
  for s in $chosen; do
    for dir in $(service_files "$s"); do
      set -- "$@" --include "$dir" --include "$STAGE/sqlite$dir"
    done
    if [ "$(service_kind "$s")" = postgres ]; then
      set -- "$@" --include "$STAGE/postgres/$s.sql"
    fi
  done
  if [ "$#" -gt 0 ]; then
    restic_ restore "$snapshot" --host "$HOST_NAME" --tag "$TAG" --target . "$@"
  fi
  # 2. Every database copy must be whole before anything is replaced.
  if [ -d "$work$STAGE/sqlite" ]; then
    find "$work$STAGE/sqlite" -type f > "$STATE_DIR/restored"
    while IFS= read -r db; do
      check=$("$SQLITE3" -init /dev/null "$db" 'PRAGMA integrity_check;' 2>&1) || true
      [ "$check" = ok ] || fail "${{db#"$work$STAGE/sqlite"}} in snapshot $snapshot fails integrity_check: $check"
    done < "$STATE_DIR/restored"
  fi
  # 3. Stop what uses the state: the service itself, or a database's clients (the database keeps running).
  stopped=""
  for s in $chosen; do
    if [ "$(service_kind "$s")" = postgres ]; then
      for c in $(service_clients "$s"); do
        stop_container "$c"
      done
    else
      stop_container "$s"
    fi
  done
  # 4. Put the state back.
  for s in $chosen; do
    for dir in $(service_files "$s"); do
      if [ ! -d "$work$dir" ]; then
        say "$s: $dir is not in snapshot $snapshot; left as it is"
        continue
      fi
      if [ -d "$work$STAGE/sqlite$dir" ]; then
        (cd "$work$STAGE/sqlite$dir" && find . -type f) > "$STATE_DIR/restored"
        while IFS= read -r rel; do
          mv "$work$STAGE/sqlite$dir/$rel" "$work$dir/$rel"
        done < "$STATE_DIR/restored"
      fi
      if [ -e "$dir" ]; then
        mv "$dir" "$dir.before-restore-$stamp"
        say "$s: the state it had is kept in $dir.before-restore-$stamp"
      fi
      mv -T "$work$dir" "$dir"  # -T: onto a name, never into a directory a link there points to
      say "$s: $dir restored from snapshot $snapshot"
    done
    for dir in $(service_in_place "$s"); do
      restic_ restore "$snapshot" --host "$HOST_NAME" --tag "$TAG" --target / --include "$dir"
      say "$s: $dir restored in place from snapshot $snapshot (files added since are kept)"
    done
    if [ "$(service_kind "$s")" = postgres ]; then
      dump="$work$STAGE/postgres/$s.sql"
      [ -f "$dump" ] || fail "$s: no dump in snapshot $snapshot"
      "$DOCKER" start "$s" >/dev/null 2>&1 || true
      waited=0
      until postgres_ready "$s"; do
        waited=$((waited + 1))
        [ "$waited" -lt 120 ] || fail "$s: the database did not become ready"
        sleep 1
      done
      # Immich's documented fix: its extensions' functions are found on the search path.
      sed "{SEARCH_PATH_FIX}" "$dump" | postgres_load "$s"
      say "$s: database loaded from snapshot $snapshot"
    fi
  done
  # 5. Start again what was stopped.
  for c in $stopped; do
    say "starting $c"
    "$DOCKER" start "$c" >/dev/null
  done
  find . -mindepth 1 -delete
  cd /
  rmdir "$work_path" 2>/dev/null || true
  say "restore of $target from snapshot $snapshot done"
}}

# -- the repository --------------------------------------------------------------------------------

init() {{
  lock
  load_status
  if restic_ cat config >/dev/null 2>&1; then
    say "repository $REPOSITORY is there"
  else
    case "$REPOSITORY" in
      /*) mkdir -p "$REPOSITORY" ;;
    esac
    restic_ init
  fi
  if [ -z "$INSTALLED" ]; then
    INSTALLED=$(date +%s)
  fi
  save_status
  write_metrics
}}

check() {{
  lock
  load_status
  CHECK_RUN=$(date +%s)
  if restic_ check{subset}; then
    CHECK_OK=1
    CHECK_SUCCESS=$CHECK_RUN
    save_status
    write_metrics
  else
    CHECK_OK=0
    save_status
    write_metrics
    fail "the repository check failed: see above, and docs/backups.md"
  fi
}}

services() {{
  for s in $SERVICES; do
    kind=$(service_kind "$s")
    printf '%-26s %-9s %s\\n' "$s" "$kind" "$(service_files "$s" | tr '\\n' ' ')$(service_in_place "$s" | tr '\\n' ' ')"
    note=$(service_note "$s")
    if [ -n "$note" ]; then
      printf '%-26s %-9s %s\\n' "" "" "$note"
    fi
  done
}}

command=${{1:-}}
[ "$#" -gt 0 ] && shift
case "$command" in
  init) init ;;
  backup) backup ;;
  snapshots) restic_ snapshots --host "$HOST_NAME" --tag "$TAG" "$@" ;;
  restore) restore "$@" ;;
  forget) lock; restic_ forget --host "$HOST_NAME" --tag "$TAG" --group-by host,tags {keep} "$@" ;;
  prune) lock; restic_ prune ;;
  check) check ;;
  maintain) (lock; restic_ prune) && check ;;
  services) services ;;
  restic) restic_ "$@" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
"""


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
    return f"""#!/bin/sh
# mediastack: install {NAME} with its timers. Idempotent. Standard input: the repository password on the first
# line, then the repository's credentials as shell assignments (never in the plan or on a command line).
set -eu
ROOT="${{ROOT:-}}"
changed=""
{files}state="$ROOT{STATE_DIR}"
mkdir -p "$state"
chmod 711 "$state"
password=""
IFS= read -r password || true
if [ -z "$password" ]; then
  echo "backup: no repository password on standard input" >&2
  exit 1
fi
credentials=$(cat)
umask 077
if [ ! -f "$state/password" ] || [ "$(cat "$state/password")" != "$password" ]; then
  printf '%s\\n' "$password" > "$state/password.new"
  mv "$state/password.new" "$state/password"
  changed="$changed password"
fi
if [ -n "$credentials" ]; then
  if [ ! -f "$state/env" ] || [ "$(cat "$state/env")" != "$credentials" ]; then
    printf '%s\\n' "$credentials" > "$state/env.new"
    mv "$state/env.new" "$state/env"
    changed="$changed credentials"
  fi
elif [ -f "$state/env" ]; then
  rm -f "$state/env"
  changed="$changed credentials"
fi
chmod 600 "$state/password"
if [ -z "$changed" ]; then
  echo "backup: files unchanged"
else
  echo "backup: installed$changed"
fi
if [ -z "$ROOT" ]; then
  missing=""
  command -v restic >/dev/null 2>&1 || missing="$missing restic"
  command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
  if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "backup: install$missing on this host (Debian: apt-get install$missing)" >&2
      exit 1
    fi
  fi
  systemctl daemon-reload
  {TOOL} init
  systemctl enable --now --quiet {NAME}.timer {NAME}-check.timer
fi
"""


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
        from .host_command import host_command

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
