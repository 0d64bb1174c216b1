"""A streaming read replica of Immich's PostgreSQL on a second node (cluster stacks only).

The replica is a hot standby: a physical copy kept current by streaming replication through a replication
slot, readable (hot_standby) and ready to be promoted when the primary's node is lost. Immich itself opens
one connection pool to one database and cannot route its reads to a replica (see docs/cluster.md), so the
replica's job here is the primary's survival, and read-only work that is not Immich's (reports, exports,
dumps for backups) can go to it without loading the primary.

Files (mounted as Swarm configs): the pg_hba both servers use (a replication line for the stack's database
user, password authentication), the replica's entrypoint, and its init script, which takes a base backup
into an empty data directory and leaves a populated one alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mediastack.host.scripts import script
from mediastack.plan.replica_settings import (  # noqa: F401  (re-exported)
    ENTRYPOINT,
    HBA_FILE,
    IMAGE_ENTRYPOINT,
    INIT,
    PATHS,
    PRIMARY,
    REPLICA,
    SLOT,
    primary_settings,
    standby_settings,
)

if TYPE_CHECKING:
    from mediastack.plan.resolved import ResolvedStack


def pg_hba(stack: ResolvedStack) -> str:
    user = stack.get(PRIMARY).env.get("POSTGRES_USER", "immich")
    return f"""# mediastack: Immich's PostgreSQL and its streaming replica.
# The socket inside the container: as the image's own initdb sets it.
local   all          all                   trust
# Immich and the exporter over the internal database network, with the generated password.
host    all          all          all      scram-sha-256
# The replica's base backup and WAL stream.
host    replication  {user}       all      scram-sha-256
"""


def replica_entrypoint(stack: ResolvedStack) -> str:
    return f"""#!/bin/sh
# The replica's entrypoint: hands the data directory to postgres, makes it a standby if it is empty, then
# runs the image's own entrypoint (Immich's, which installs the postgresql.conf its CMD's config_file names, then
# the PostgreSQL one, which starts the server on the existing data directory).
set -eu
: "${{PGDATA:=/var/lib/postgresql/data}}"
export PGDATA
mkdir -p "$PGDATA"
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  gosu postgres sh {INIT}
else
  sh {INIT}
fi
exec {IMAGE_ENTRYPOINT} "$@"
"""


def replica_init(stack: ResolvedStack) -> str:
    """replica_init.sh as it is: the file names PRIMARY and SLOT itself, so that the config it is mounted from keeps
    its content (and its name) when the code moves; tests/test_layout.py checks that they agree."""
    return script("replica_init.sh", {})
