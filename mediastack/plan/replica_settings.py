"""Names, paths and server settings of Immich's PostgreSQL replica: plain data that resolution reads."""

from __future__ import annotations

PRIMARY = "immich-postgres"
REPLICA = "immich-postgres-replica"
SLOT = "immich_replica"
HBA_FILE = "/etc/postgresql/mediastack-hba.conf"
ENTRYPOINT = "/usr/local/bin/mediastack-replica.sh"
INIT = "/usr/local/bin/mediastack-replica-init.sh"
# The image's own entrypoint (immich-app/base-images postgres/Dockerfile): it copies postgresql.conf into place.
IMAGE_ENTRYPOINT = "/usr/local/bin/immich-docker-entrypoint.sh"
PATHS = {
    "immich-postgres/pg_hba.conf": HBA_FILE,
    "immich-postgres/replica.sh": ENTRYPOINT,
    "immich-postgres/replica-init.sh": INIT,
}


def primary_settings() -> dict[str, str]:
    """What the primary needs to feed a standby (user overrides in postgres_settings still win)."""
    return {
        "hba_file": HBA_FILE,
        "wal_level": "replica",
        "max_wal_senders": "5",
        "max_replication_slots": "5",
        # A slot keeps WAL until the standby has it; bounded, so a replica that is gone for good cannot
        # fill the primary's disk (it then needs a new base backup).
        "max_slot_wal_keep_size": "8GB",
        "wal_log_hints": "on",  # lets pg_rewind turn the old primary into a standby after a failover
    }


def standby_settings() -> dict[str, str]:
    """A readable standby whose queries are not cancelled by the primary's vacuum (at the price of some bloat
    on the primary while a long query runs) and that falls at most 30 s behind while one does."""
    return {"hot_standby": "on", "hot_standby_feedback": "on", "max_standby_streaming_delay": "30s"}
