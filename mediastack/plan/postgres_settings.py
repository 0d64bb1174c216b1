"""Database settings computed from what the container really gets: its limits, not the host's.

PostgreSQL sizes its caches from `shared_buffers` and trusts `effective_cache_size` to estimate the page
cache; inside a container both must come from the container's memory limit (the page cache is charged to
the container's cgroup too), or the planner assumes memory the kernel will never give it.
"""

from __future__ import annotations

from mediastack.model.config import StorageKind

MIB = 1024**2
GIB = 1024**3


def _mb(size: int) -> str:
    return f"{max(size // MIB, 1)}MB"


def postgres_settings(
    memory: int, cpus: float, storage: StorageKind, max_connections: int = 50, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """Settings for a PostgreSQL server limited to `memory` bytes and `cpus` CPUs on `storage`.

    The user's overrides win over every computed value.
    """
    workers = max(int(cpus), 1)
    shared_buffers = min(memory // 4, 8 * GIB)  # a quarter: the rest is work_mem, maintenance and page cache
    work_mem = max((memory - shared_buffers) // (max_connections * 3), 4 * MIB)
    settings = {
        "max_connections": str(max_connections),
        "shared_buffers": _mb(shared_buffers),
        "effective_cache_size": _mb(memory * 3 // 4),
        "work_mem": _mb(work_mem),
        "maintenance_work_mem": _mb(min(memory // 16, 2 * GIB)),
        "wal_buffers": _mb(min(max(shared_buffers // 32, 64 * 1024), 16 * MIB)),
        "checkpoint_completion_target": "0.9",
        "checkpoint_timeout": "15min",
        "min_wal_size": "1GB" if storage is StorageKind.ssd else "512MB",
        "max_wal_size": "4GB" if storage is StorageKind.ssd else "2GB",
        # SSDs read a random page nearly as fast as a sequential one; spinning disks do not.
        "random_page_cost": "1.1" if storage is StorageKind.ssd else "4.0",
        "effective_io_concurrency": "200" if storage is StorageKind.ssd else "2",
        "default_statistics_target": "100",
        "max_worker_processes": str(max(workers, 2)),
        "max_parallel_workers": str(workers),
        "max_parallel_workers_per_gather": str(max(workers // 2, 1)),
        "max_parallel_maintenance_workers": str(max(workers // 2, 1)),
        # Immich's queries are short; JIT compilation costs more than it saves on them.
        "jit": "off",
    }
    settings.update(overrides or {})
    return settings


def postgres_command(settings: dict[str, str]) -> tuple[str, ...]:
    """`postgres -c key=value ...`: on top of the image's own postgresql.conf, which keeps its extensions."""
    args: list[str] = ["postgres"]
    for key, value in sorted(settings.items()):
        args += ["-c", f"{key}={value}"]
    return tuple(args)
