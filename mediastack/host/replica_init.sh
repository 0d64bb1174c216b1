#!/bin/sh
# Makes PGDATA a streaming standby of the primary when it is empty (first start, or wiped to be rebuilt);
# leaves a populated one alone. Waits for the primary at most two minutes. Runs as the postgres user.
set -eu
: "${PGDATA:?PGDATA is not set}"
: "${PGUSER:?PGUSER is not set}"
primary="${REPLICA_PRIMARY:-immich-postgres}"
if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "replica: $PGDATA holds a cluster; starting it as it is"
  exit 0
fi
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  export PGPASSWORD
fi
tries=0
until pg_isready -h "$primary" -q; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "replica: primary $primary not ready after 2 minutes" >&2
    exit 1
  fi
  sleep 2
done
exists=$(psql -h "$primary" -d postgres -tAc "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'immich_replica'")
create=""
if [ -z "$exists" ]; then
  create=yes
fi
pg_basebackup -h "$primary" -D "$PGDATA" --wal-method=stream --checkpoint=fast --write-recovery-conf \
  --slot=immich_replica ${create:+--create-slot}
echo "replica: base backup taken; streaming from $primary through slot immich_replica"
