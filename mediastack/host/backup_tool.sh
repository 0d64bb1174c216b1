#!/bin/sh
# mediastack-backup: consistent backups of every service's state (restic), and their restore.
#@origin
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

#@parameters
RESTIC="${RESTIC:-restic}"
SQLITE3="${SQLITE3:-sqlite3}"
STAGE="$STATE_DIR/staging"

service_kind() {
  case "$1" in
#@kinds
    *) echo "mediastack-backup: $1 is not a covered service; covered: $SERVICES" >&2; return 1 ;;
  esac
}

# Directories restored by swapping the whole directory (the old one is kept beside it).
service_files() {
  case "$1" in
#@files
  esac
}

# Directories restored in place (large user data: files are put back, nothing is removed).
service_in_place() {
  case "$1" in
#@in_place
  esac
}

# Containers that use a database and are stopped while its dump is loaded.
service_clients() {
  case "$1" in
#@clients
  esac
}

service_note() {
  case "$1" in
#@notes
  esac
}

postgres_dump() {
  if [ -n "${MEDIASTACK_PG_DUMP:-}" ]; then
    SERVICE="$1" sh -c "$MEDIASTACK_PG_DUMP"
    return
  fi
  case "$1" in
#@dump
  esac
}

postgres_load() {
  if [ -n "${MEDIASTACK_PG_RESTORE:-}" ]; then
    SERVICE="$1" sh -c "$MEDIASTACK_PG_RESTORE"
    return
  fi
  case "$1" in
#@load
  esac
}

postgres_ready() {
  if [ -n "${MEDIASTACK_PG_RESTORE:-}" ]; then
    return 0
  fi
  case "$1" in
#@ready
  esac
}

redis_cli() {
  service=$1
  shift
  if [ -n "${MEDIASTACK_REDIS_CLI:-}" ]; then
    sh -c "$MEDIASTACK_REDIS_CLI \"\$@\"" redis-cli "$@"
    return
  fi
  case "$service" in
#@redis
  esac
}

say() {
  echo "mediastack-backup: $*"
}

fail() {
  echo "mediastack-backup: $*" >&2
  exit 1
}

restic_() {
  # The credentials file is NAME=value lines, read as data (never sourced: a value is never shell).
  if [ -f "$STATE_DIR/env" ]; then
    while IFS= read -r assignment; do
      case "$assignment" in
        AWS_ACCESS_KEY_ID=*) AWS_ACCESS_KEY_ID=${assignment#*=}; export AWS_ACCESS_KEY_ID ;;
        AWS_SECRET_ACCESS_KEY=*) AWS_SECRET_ACCESS_KEY=${assignment#*=}; export AWS_SECRET_ACCESS_KEY ;;
        *) ;;
      esac
    done < "$STATE_DIR/env"
  fi
  [ -s "$STATE_DIR/password" ] || fail "no repository password in $STATE_DIR/password (pulumi up writes it)"
  "$RESTIC" --repo "$REPOSITORY" --password-file "$STATE_DIR/password" --cache-dir "$STATE_DIR/cache" "$@"
}

lock() {
  mkdir -p "$STATE_DIR"
  chmod 711 "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    fail "another mediastack-backup run holds $STATE_DIR/lock"
  fi
}

# -- status and metrics (node-exporter textfile) -------------------------------------------------------

var_of() {
  printf 'SERVICE_%s' "$1" | tr -c 'A-Za-z0-9_' '_'
}

load_status() {
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
}

save_status() {
  {
    for key in INSTALLED LAST_SUCCESS LAST_RUN LAST_RUN_OK LAST_DURATION LAST_SIZE LAST_ADDED \
      CHECK_RUN CHECK_OK CHECK_SUCCESS; do
      eval "value=\${$key:-}"
      printf '%s=%s\n' "$key" "$value"
    done
    for s in $SERVICES; do
      var=$(var_of "$s")
      eval "value=\${$var:-}"
      printf '%s=%s\n' "$var" "$value"
    done
  } > "$STATE_DIR/status.new"
  mv "$STATE_DIR/status.new" "$STATE_DIR/status"
}

metric() {
  # name, help, value: one gauge, written only when it has a value
  if [ -n "$3" ]; then
    printf '# HELP %s %s\n# TYPE %s gauge\n%s %s\n' "$1" "$2" "$1" "$1" "$3"
  fi
}

write_metrics() {
  mkdir -p "$METRICS_DIR"
  chmod 755 "$METRICS_DIR"
  tmp="$METRICS_DIR/.$METRICS_FILE.$$"
  {
    metric mediastack_backup_installed_timestamp_seconds "When mediastack-backup was installed." "$INSTALLED"
    metric mediastack_backup_last_success_timestamp_seconds \
      "Start of the last backup in which every covered service was backed up." "$LAST_SUCCESS"
    metric mediastack_backup_last_run_timestamp_seconds "Start of the last backup run." "$LAST_RUN"
    metric mediastack_backup_last_run_success "1 if the last backup run backed up every service." "$LAST_RUN_OK"
    metric mediastack_backup_last_duration_seconds "Duration of the last successful backup." "$LAST_DURATION"
    metric mediastack_backup_last_size_bytes "Size of the state in the last successful snapshot." "$LAST_SIZE"
    metric mediastack_backup_last_added_bytes \
      "What the last successful backup added to the repository (after deduplication)." "$LAST_ADDED"
    metric mediastack_backup_check_last_run_timestamp_seconds "Start of the last repository check." "$CHECK_RUN"
    metric mediastack_backup_check_last_run_success "1 if the last repository check passed." "$CHECK_OK"
    metric mediastack_backup_check_last_success_timestamp_seconds "Start of the last passed check." "$CHECK_SUCCESS"
    printf '# HELP mediastack_backup_service_last_success_timestamp_seconds %s\n' \
      "Start of the last backup that included this service's state."
    printf '# TYPE mediastack_backup_service_last_success_timestamp_seconds gauge\n'
    for s in $SERVICES; do
      eval "value=\${$(var_of "$s"):-}"
      if [ -n "$value" ]; then
        printf 'mediastack_backup_service_last_success_timestamp_seconds{service="%s"} %s\n' "$s" "$value"
      fi
    done
  } > "$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$METRICS_DIR/$METRICS_FILE"
}

# -- consistency steps, before the snapshot ----------------------------------------------------------

as_owner() {
  # Run as the database file's owner (root runs it as that user), so SQLite never leaves a root-owned
  # -wal or -shm file the app cannot open.
  if [ -n "$owner" ]; then
    setpriv --reuid="$owner" --regid="$group" --clear-groups "$@"
  else
    "$@"
  fi
}

snapshot_sqlite() {
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
    copy=$(printf ".timeout 120000\nVACUUM INTO '%s';" "$work/copy.db")
  else
    copy=$(printf ".timeout 120000\nBEGIN;\nSELECT count(*) FROM sqlite_schema;\n.backup '%s'\nCOMMIT;" \
      "$work/copy.db")
  fi
  if ! printf '%s\n' "$copy" | as_owner "$SQLITE3" -bail -init /dev/null "$db" >/dev/null; then
    echo "mediastack-backup: $db: the SQLite copy ($SQLITE_COPY) failed" >&2
    return 1
  fi
  check=$(as_owner "$SQLITE3" -init /dev/null "$work/copy.db" 'PRAGMA quick_check;' 2>&1) || true
  if [ "$check" != ok ]; then
    echo "mediastack-backup: $db: the copy fails quick_check: $check" >&2
    return 1
  fi
  mkdir -p "$(dirname "$dest")" && mv "$work/copy.db" "$dest" && rm -rf "$work"
}

stage_sqlite_in() {
  # Every SQLite database under $1: by name, or by a -wal/-journal beside it; then by its header.
  find "$1" \( -name log -o -name logs -o -name cache -o -name Cache -o -name transcodes \) -prune -o -type f \
    \( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' -o -name '*.db3' \
    -o -name '*-wal' -o -name '*-journal' \) -print \
    | sed -e 's/-wal$//' -e 's/-journal$//' | sort -u > "$STATE_DIR/databases" || return 1
  rc=0
  while IFS= read -r db; do
    [ -f "$db" ] || continue
    [ "$(head -c 15 "$db" 2>/dev/null)" = "SQLite format 3" ] || continue
    # the live file never enters the snapshot; its consistent copy does
    printf '%s\n' "$db" | sed 's/[][*?\\]/\\&/g' >> "$STATE_DIR/excludes"
    if ! snapshot_sqlite "$db"; then
      rc=1
    fi
  done < "$STATE_DIR/databases"
  return "$rc"
}

stage_postgres() {
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
}

stage_redis() {
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
}

stage_service() {
  s=$1
  kind=$(service_kind "$s")
  case "$kind" in
    postgres) stage_postgres "$s" || return 1 ;;
    redis) stage_redis "$s" || return 1 ;;
  esac
  failed_here=0
  for dir in $(service_files "$s") $(service_in_place "$s"); do
    if [ -e "$dir" ]; then
      printf '%s\n' "$dir" >> "$STATE_DIR/files"
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
}

backup() {
  lock
  load_status
  started=$(date +%s)
  LAST_RUN=$started
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  chmod 711 "$STAGE"
  mkdir -m 700 "$STAGE/sqlite" "$STAGE/postgres"
  printf '%s\n' "$EXCLUDES" > "$STATE_DIR/excludes"
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
  printf '%s\n' "$STAGE" >> "$STATE_DIR/files"
  set -- --host "$HOST_NAME" --tag "$TAG" --exclude-file "$STATE_DIR/excludes" \
    --files-from-verbatim "$STATE_DIR/files" --json --quiet
  if [ -n "${MEDIASTACK_BACKUP_TIME:-}" ]; then
    set -- "$@" --time "$MEDIASTACK_BACKUP_TIME"
  fi
  rc=0
  restic_ backup "$@" > "$STATE_DIR/summary.json" || rc=$?
  summary=$(grep '"message_type":"summary"' "$STATE_DIR/summary.json" || true)
  snapshot=$(printf '%s' "$summary" | sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p')
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
  LAST_SIZE=$(printf '%s' "$summary" | sed -n 's/.*"total_bytes_processed":\([0-9]*\).*/\1/p')
  LAST_ADDED=$(printf '%s' "$summary" | sed -n 's/.*"data_added":\([0-9]*\).*/\1/p')
  save_status
  write_metrics
  say "snapshot $snapshot: $LAST_SIZE bytes of state, $LAST_ADDED added to the repository, $LAST_DURATION s"
  # shellcheck disable=SC2086  # KEEP is a list of restic options, split on purpose (globbing is off)
  restic_ forget --host "$HOST_NAME" --tag "$TAG" --group-by host,tags $KEEP
}

# -- restore ---------------------------------------------------------------------------------------

stop_container() {
  case " $stopped " in
    *" $1 "*) return 0 ;;
  esac
  if "$DOCKER" inspect "$1" >/dev/null 2>&1; then
    say "stopping $1"
    "$DOCKER" stop --time 120 "$1" >/dev/null
    stopped="$stopped $1"
  fi
}

restore() {
  target=${1:-}
  snapshot=${2:-latest}
  [ -n "$target" ] || fail "usage: mediastack-backup restore SERVICE|all [SNAPSHOT]"
#@swarm_restore
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
      [ "$check" = ok ] || fail "${db#"$work$STAGE/sqlite"} in snapshot $snapshot fails integrity_check: $check"
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
      sed "$SEARCH_PATH_FIX" "$dump" | postgres_load "$s"
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
}

# -- the repository --------------------------------------------------------------------------------

init() {
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
}

check() {
  lock
  load_status
  CHECK_RUN=$(date +%s)
  # shellcheck disable=SC2086  # CHECK_OPTIONS: empty, or one option
  if restic_ check $CHECK_OPTIONS; then
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
}

services() {
  for s in $SERVICES; do
    kind=$(service_kind "$s")
    printf '%-26s %-9s %s\n' "$s" "$kind" "$(service_files "$s" | tr '\n' ' ')$(service_in_place "$s" | tr '\n' ' ')"
    note=$(service_note "$s")
    if [ -n "$note" ]; then
      printf '%-26s %-9s %s\n' "" "" "$note"
    fi
  done
}

command=${1:-}
[ "$#" -gt 0 ] && shift
# shellcheck disable=SC2086  # KEEP in forget: restic options, split on purpose (globbing is off)
case "$command" in
  init) init ;;
  backup) backup ;;
  snapshots) restic_ snapshots --host "$HOST_NAME" --tag "$TAG" "$@" ;;
  restore) restore "$@" ;;
  forget) lock; restic_ forget --host "$HOST_NAME" --tag "$TAG" --group-by host,tags $KEEP "$@" ;;
  prune) lock; restic_ prune ;;
  check) check ;;
  maintain) (lock; restic_ prune) && check ;;
  services) services ;;
  restic) restic_ "$@" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
