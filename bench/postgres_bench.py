"""An Immich-like PostgreSQL workload: stock settings against mediastack's, in the same run.

    .venv/bin/python bench/postgres_bench.py [--assets 500000] [--seconds 15] [--clients 4]

Builds (once per run, in a temporary directory) 500,000 assets with one EXIF row each and the kind of
indexes Immich ships, then runs five query classes with pgbench — timeline month buckets, one month's
assets, search by place, by camera, by date range — first against PostgreSQL's stock settings, then
against the settings mediastack computes for Immich's database container (standard tier: 2 GiB,
2 CPUs, SSD). Prints p50/p95 latency per class and transactions per second. Each server is restarted
and the OS page cache dropped (when permitted) before its run. Loopback/unix socket only; bounded by
--seconds per class.

Note: this machine has no cgroup memory controller to enforce the 2 GiB limit on the server; both
runs see the same unconfined machine, and the settings differ only as configured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediastack.model.config import StorageKind  # noqa: E402
from mediastack.plan.postgres_settings import GIB, postgres_command, postgres_settings  # noqa: E402

BIN = Path("/usr/lib/postgresql/15/bin")

SCHEMA = """
CREATE TABLE assets (
  id bigserial PRIMARY KEY,
  "ownerId" int NOT NULL,
  "deviceAssetId" text NOT NULL,
  type text NOT NULL,
  "originalPath" text NOT NULL,
  "fileCreatedAt" timestamptz NOT NULL,
  "localDateTime" timestamptz NOT NULL,
  "isFavorite" boolean NOT NULL DEFAULT false,
  "isArchived" boolean NOT NULL DEFAULT false,
  "deletedAt" timestamptz,
  checksum bytea NOT NULL
);
CREATE TABLE exif (
  "assetId" bigint PRIMARY KEY REFERENCES assets(id) ON DELETE CASCADE,
  make text, model text, "lensModel" text,
  "dateTimeOriginal" timestamptz,
  city text, state text, country text,
  latitude double precision, longitude double precision,
  "exifImageWidth" int, "exifImageHeight" int, "fileSizeInByte" bigint, iso int, "fNumber" double precision
);
"""

LOAD = """
INSERT INTO assets ("ownerId", "deviceAssetId", type, "originalPath", "fileCreatedAt", "localDateTime",
                    "isFavorite", "isArchived", "deletedAt", checksum)
SELECT 1 + (g % 4), 'dev-' || g, CASE WHEN g % 10 = 0 THEN 'VIDEO' ELSE 'IMAGE' END,
       '/data/library/' || (g % 4) || '/' || g || '.jpg',
       t, t, g % 50 = 0, g % 40 = 0, CASE WHEN g % 200 = 0 THEN t + interval '1 day' END,
       decode(md5(g::text), 'hex')
FROM (SELECT g, timestamptz '2015-01-01' + (random() * 3650) * interval '1 day' AS t
      FROM generate_series(1, {n}) g) s;
INSERT INTO exif ("assetId", make, model, "lensModel", "dateTimeOriginal", city, state, country, latitude,
                  longitude, "exifImageWidth", "exifImageHeight", "fileSizeInByte", iso, "fNumber")
SELECT id, 'make' || (id % 20), 'model' || (id % 100), 'lens' || (id % 30), "fileCreatedAt",
       'city' || (id % 200), 'state' || (id % 50), 'country' || (id % 12),
       random() * 180 - 90, random() * 360 - 180, 4032, 3024, 2000000 + id % 5000000, 100 * (1 + id % 32), 1.8
FROM assets;
"""

# The indexes Immich creates for these access paths (names after Immich's own).
INDEXES = """
CREATE UNIQUE INDEX "UQ_assets_owner_checksum" ON assets ("ownerId", checksum);
CREATE INDEX "IDX_asset_id_stackId" ON assets ("ownerId", "localDateTime" DESC) WHERE "deletedAt" IS NULL;
CREATE INDEX "idx_asset_file_created_at" ON assets ("fileCreatedAt");
CREATE INDEX "exif_city" ON exif (city);
CREATE INDEX "IDX_exif_make_model" ON exif (make, model);
CREATE INDEX "IDX_exif_date_time_original" ON exif ("dateTimeOriginal");
"""

QUERIES = {
    "timeline buckets": r"""\set owner random(1, 4)
SELECT date_trunc('month', "localDateTime") AS bucket, count(*) FROM assets
WHERE "ownerId" = :owner AND "deletedAt" IS NULL AND NOT "isArchived" GROUP BY 1 ORDER BY 1 DESC;
""",
    "one month's assets": r"""\set owner random(1, 4)
\set m random(0, 119)
SELECT a.id, a."originalPath", a."localDateTime", e.make, e.model, e.city FROM assets a
JOIN exif e ON e."assetId" = a.id
WHERE a."ownerId" = :owner AND a."deletedAt" IS NULL
  AND a."localDateTime" >= timestamptz '2015-01-01' + :m * interval '1 month'
  AND a."localDateTime" <  timestamptz '2015-01-01' + (:m + 1) * interval '1 month'
ORDER BY a."localDateTime" DESC;
""",
    "search by place": r"""\set c random(0, 199)
SELECT a.id, a."localDateTime" FROM exif e JOIN assets a ON a.id = e."assetId"
WHERE e.city = 'city' || :c AND a."deletedAt" IS NULL ORDER BY a."localDateTime" DESC LIMIT 250;
""",
    "search by camera": r"""\set k random(0, 19)
\set v random(0, 4)
SELECT a.id, e."dateTimeOriginal" FROM exif e JOIN assets a ON a.id = e."assetId"
WHERE e.make = 'make' || :k AND e.model = 'model' || (:k + 20 * :v)
ORDER BY e."dateTimeOriginal" DESC LIMIT 250;
""",
    "search by date range": r"""\set d random(0, 3600)
SELECT a.id, e.city FROM exif e JOIN assets a ON a.id = e."assetId"
WHERE e."dateTimeOriginal" BETWEEN timestamptz '2015-01-01' + :d * interval '1 day'
                               AND timestamptz '2015-01-01' + (:d + 30) * interval '1 day'
ORDER BY e."dateTimeOriginal" LIMIT 500;
""",
}


def as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{args[-1] if len(args) < 6 else Path(args[4]).name} failed: {result.stderr.strip()}")
    return result


def psql(sock: Path, sql: str) -> None:
    as_postgres(
        [str(BIN / "psql"), "-h", str(sock), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], timeout=1800
    )


def start(root: Path, settings: dict[str, str]) -> subprocess.Popen[str]:
    args = [str(BIN / "postgres"), "-D", str(root / "data"), "-k", str(root), "-c", "listen_addresses="]
    args += list(postgres_command(settings)[1:])
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    for _ in range(300):
        ok = subprocess.run([str(BIN / "pg_isready"), "-h", str(root), "-U", "postgres"], capture_output=True)
        if ok.returncode == 0:
            return server
        time.sleep(0.1)
    raise RuntimeError("postgres did not start")


def stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    server.wait(timeout=60)


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_class(root: Path, name: str, script: str, seconds: int, clients: int) -> tuple[float, float, float]:
    work = root / "pgbench"
    work.mkdir(exist_ok=True)
    (work / "q.sql").write_text(script)
    for old in work.glob("pgbench_log*"):
        old.unlink()
    as_postgres(
        [
            str(BIN / "pgbench"),
            "-h",
            str(root),
            "-U",
            "postgres",
            "-n",
            "-f",
            str(work / "q.sql"),
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
            "-l",
            "--log-prefix",
            str(work / "pgbench_log"),
            "postgres",
        ],
        timeout=seconds + 120,
    )
    latencies = []
    for log in work.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            parts = line.split()
            latencies.append(int(parts[2]) / 1000)  # microseconds -> ms
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[94], len(latencies) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=500_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mediastack-pgbench-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        as_postgres([str(BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres"])
        (root / "pgbench").mkdir()
        if os.geteuid() == 0:
            shutil.chown(root / "pgbench", "postgres")
        server = start(root, {})
        started = time.monotonic()
        psql(root, SCHEMA)
        psql(root, LOAD.format(n=args.assets))
        psql(root, INDEXES)
        psql(root, "VACUUM ANALYZE")  # not inside the transaction psql -c wraps several statements in
        print(f"loaded {args.assets} assets + EXIF rows and indexes in {time.monotonic() - started:.0f} s")
        stop(server)

        tuned = postgres_settings(2 * GIB, 2, StorageKind.ssd)
        profiles = {"stock": {}, "mediastack (2 GiB, 2 CPUs, SSD)": tuned}
        rows: dict[str, dict[str, tuple[float, float, float]]] = {}
        dropped = False
        for profile, settings in profiles.items():
            dropped = drop_caches() or dropped
            server = start(root, settings)
            try:
                rows[profile] = {
                    name: run_class(root, name, sql, args.seconds, args.clients) for name, sql in QUERIES.items()
                }
            finally:
                stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{args.clients} clients, {args.seconds} s per class; page cache dropped before each profile: {dropped}")
    print(f"{'query class':<22}" + "".join(f"{p[:30]:>34}" for p in profiles))
    print(f"{'':<22}" + "".join(f"{'p50 ms':>12}{'p95 ms':>11}{'tx/s':>11}" for _ in profiles))
    for name in QUERIES:
        line = f"{name:<22}"
        for profile in profiles:
            p50, p95, tps = rows[profile][name]
            line += f"{p50:>12.2f}{p95:>11.2f}{tps:>11.1f}"
        print(line)
    totals = {p: sum(r[2] for r in rows[p].values()) for p in profiles}
    print("throughput, all classes: " + ", ".join(f"{p}: {t:.1f} tx/s" for p, t in totals.items()))


if __name__ == "__main__":
    main()
