"""The backup tool on a sample state tree of more than 1 GiB: a first backup, then a second after a small change.

    .venv/bin/python bench/backup_bench.py [--gib 1.1] [--keep DIR]

Builds (in a temporary directory) state shaped like a real stack's: Jellyfin's library database and
metadata images, the *arr apps' databases and their own zip backups, Grafana's database, Prometheus'
completed blocks. Then it runs the generated `mediastack-backup` (restic from Debian, a local repository
on the same disk) three times in the same run: the first backup, a second one after a small change (rows
added to and updated in the databases, a few new images, an edited config file), and a full restore.
For each it prints wall time and how much the repository grew. The OS page cache is dropped before each
run when permitted (root), so the reads come from the disk.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediastack.host.backup import backup_plan, backup_tool  # noqa: E402
from mediastack.plan.loading import parse_stack_config  # noqa: E402
from mediastack.plan.resolve import resolve  # noqa: E402

MIB = 1024**2
WORDS = (  # noqa: SIM905
    "the of and a to in is you that it he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about out"
).split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sqlite(path: Path, rows: int, rng: random.Random, blob: int) -> None:
    """A media-server-like table: paths, titles, overviews (text that compresses), ids, and some binary data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, path TEXT, name TEXT, overview TEXT, "
        "provider_ids TEXT, date_created TEXT, image BLOB)"
    )
    con.execute("CREATE INDEX items_name ON items (name)")
    batch = []
    for i in range(1, rows + 1):
        batch.append(
            (
                i,
                f"/data/media/movies/{_text(rng, 3)} ({1950 + i % 75})/{i}.mkv",
                _text(rng, 4),
                _text(rng, 60),
                f'{{"Tmdb":"{rng.randrange(10**7)}","Imdb":"tt{rng.randrange(10**7):07d}"}}',
                f"20{10 + i % 15}-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
                rng.randbytes(blob),
            )
        )
        if len(batch) == 5000:
            con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    con.commit()
    con.close()


def build_state(config_root: Path, gib: float) -> None:
    rng = random.Random(42)
    scale = gib / 1.1
    _sqlite(config_root / "jellyfin/data/library.db", int(180_000 * scale), rng, 1200)
    _sqlite(config_root / "jellyfin/data/jellyfin.db", int(10_000 * scale), rng, 200)
    metadata = config_root / "jellyfin/metadata/library"
    for i in range(int(2_400 * scale)):  # posters and backdrops: JPEG, does not compress
        folder = metadata / f"{i % 256:02x}" / f"item{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "poster.jpg").write_bytes(rng.randbytes(180_000 + rng.randrange(60_000)))
    for app in ("sonarr", "radarr"):
        _sqlite(config_root / app / f"{app}.db", int(40_000 * scale), rng, 600)
        (config_root / app / "config.xml").write_text(
            f"<Config><Port>8989</Port><ApiKey>{'0' * 32}</ApiKey></Config>\n"
        )
        backups = config_root / app / "Backups/scheduled"
        backups.mkdir(parents=True)
        for n in range(3):
            (backups / f"{app}_backup_{n}.zip").write_bytes(rng.randbytes(int(12 * MIB * scale)))
        (config_root / app / "logs").mkdir()
        (config_root / app / "logs" / f"{app}.txt").write_text(_text(rng, 200_000))  # excluded
    _sqlite(config_root / "grafana/grafana.db", int(5_000 * scale), rng, 100)
    for block in range(4):  # Prometheus' completed blocks: compressed chunks
        chunks = config_root / f"prometheus/01HBLOCK{block:018d}/chunks"
        chunks.mkdir(parents=True)
        (chunks / "000001").write_bytes(rng.randbytes(int(30 * MIB * scale)))
        (chunks.parent / "index").write_bytes(rng.randbytes(int(3 * MIB * scale)))
        (chunks.parent / "meta.json").write_text('{"ulid": "x", "version": 1}\n')
    (config_root / "prometheus/wal").mkdir()
    (config_root / "prometheus/wal/00000001").write_bytes(rng.randbytes(int(20 * MIB * scale)))  # excluded
    (config_root / "traefik").mkdir()
    (config_root / "traefik/acme.json").write_text('{"letsencrypt": {}}\n')


def small_change(config_root: Path) -> None:
    rng = random.Random(7)
    con = sqlite3.connect(config_root / "jellyfin/data/library.db")
    start = con.execute("SELECT max(id) FROM items").fetchone()[0] + 1
    con.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                start + i,
                f"/data/media/tv/new/{i}.mkv",
                _text(rng, 4),
                _text(rng, 60),
                "{}",
                "2025-07-01",
                rng.randbytes(1200),
            )
            for i in range(1000)
        ],
    )
    con.commit()
    con.close()
    con = sqlite3.connect(config_root / "sonarr/sonarr.db")
    con.execute("UPDATE items SET overview = ? WHERE id % 80 = 0", (_text(rng, 60),))
    con.commit()
    con.close()
    metadata = config_root / "jellyfin/metadata/library/new"
    metadata.mkdir(parents=True)
    for i in range(20):
        (metadata / f"poster{i}.jpg").write_bytes(rng.randbytes(200_000))
    xml = config_root / "radarr/config.xml"
    xml.write_text(xml.read_text().replace("8989", "7878"))


CHANGE = (
    "1000 rows added to Jellyfin's library.db, 1/80 of sonarr.db's rows updated, 20 new 200 KB images, "
    "1 config file edited"
)


def measure(base: Path, pristine: Path, method: str) -> tuple[list[tuple[str, float, int]], float, int, int]:
    """First backup, second after the small change, then restore all: (runs, restore s, restored bytes, repo)."""
    base.mkdir()
    shutil.copytree(pristine, base / "config", symlinks=True)
    config = parse_stack_config(
        {
            "domain": "media.example.org",
            "hosts": [{"name": "nas", "address": "localhost", "cpus": 16, "memory": "64GiB"}],
            "paths": {
                "config_root": f"{base}/config",
                "data_root": f"{base}/data",
                "cache_root": f"{base}/cache",
                "photos_root": f"{base}/photos",
            },
            "bundles": ["media", "arr", "monitoring"],
            "backups": {"repository": f"{base}/repository", "sqlite_copy": method},
        },
        "bench",
    )
    tool = base / "mediastack-backup"
    tool.write_text(backup_tool(backup_plan(resolve(config, "bench"))))  # type: ignore[arg-type]
    tool.chmod(0o755)
    state = base / "state"
    state.mkdir(mode=0o711)
    (state / "password").write_text("bench\n")
    docker = base / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    env = {
        **os.environ,
        "MEDIASTACK_STATE_DIR": str(state),
        "MEDIASTACK_METRICS_DIR": str(base / "metrics"),
        "DOCKER": str(docker),
    }

    def run(*command: str) -> float:
        drop_caches()
        started = time.monotonic()
        done = subprocess.run([str(tool), *command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{command}: {done.stdout}\n{done.stderr}")
        return time.monotonic() - started

    run("init")
    repo = base / "repository"
    rows = []
    for label, change in (("first backup", None), ("second, after a small change", small_change)):
        if change:
            change(base / "config")
        before = _tree_size(repo)
        seconds = run("backup")
        rows.append((label, seconds, _tree_size(repo) - before))
    restore_s = run("restore", "all")
    restored = _tree_size(base / "config") - sum(_tree_size(p) for p in (base / "config").glob("*.before-restore-*"))
    size = _tree_size(repo)
    shutil.rmtree(base / "config")  # room on the disk for the next method
    return rows, restore_s, restored, size


def drop_caches() -> bool:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.1, help="size of the sample state tree")
    parser.add_argument("--keep", type=Path, help="build in this directory and leave it there")
    args = parser.parse_args()
    for tool in ("restic", "sqlite3"):
        if not shutil.which(tool):
            print(f"{tool} is needed (apt-get install {tool})", file=sys.stderr)
            return 1
    base = args.keep or Path(tempfile.mkdtemp(prefix="mediastack-backup-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        pristine = base / "pristine"
        build_state(pristine, args.gib)
        tree = _tree_size(pristine)
        entries = sum(1 for _ in pristine.rglob("*"))
        built = time.monotonic() - started
        print(f"sample state tree: {tree / 2**30:.2f} GiB in {entries} entries (built in {built:.0f} s)")
        results = []
        for method in ("online-backup", "vacuum-into"):
            results.append((method, measure(base / method, pristine, method)))
        print(f"\n{'SQLite copy':<15}{'run':<30}{'wall s':>9}{'repository growth':>20}")
        for method, (rows, restore_s, restored, repo_size) in results:
            for label, seconds, growth in rows:
                print(f"{method:<15}{label:<30}{seconds:>9.1f}{growth / MIB:>16.1f} MiB")
            print(f"{method:<15}{'restore all':<30}{restore_s:>9.1f}{'':>20}   ({restored / 2**30:.2f} GiB put back)")
            print(f"{'':<15}repository after both backups: {repo_size / 2**30:.2f} GiB")
        print(f"\nthe small change: {CHANGE}")
        print(f"page cache dropped before each run: {drop_caches()}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
