"""A stack on a real Docker engine: time from the first API call to every container healthy.

    sudo .venv/bin/python bench/engine_bench.py [--stack prod]

Starts the tests' own dockerd (tests/dockerd.py: its own network namespace, data root and socket), builds the
stand-in images (tests/standins.py, not timed in the total), applies the plan as pulumi-docker does
(tests/engine_apply.py) and polls every container's health every second. Prints the build time, the apply
time (all API calls up to the last start), the time to all healthy (or to the deadline, with the containers
that were not), and the slowest containers. The health checks' own interval (30 s in the catalog) bounds the
figure from below: Docker runs the first check one interval after start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import standins  # noqa: E402
from engine_apply import CONTAINER, Target, apply, unsealed_plan  # noqa: E402

import dockerd  # noqa: E402
from mediastack_cli.offline import read_stack  # noqa: E402

DEADLINE_S = 300


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    engine = dockerd.start()
    try:
        plan = unsealed_plan(read_stack(ROOT, args.stack))
        names = [r.inputs["name"] for r in plan.resources if r.type == CONTAINER]
        began = time.monotonic()
        standins.build_all(engine, plan)
        built = time.monotonic() - began
        with tempfile.TemporaryDirectory(prefix="msbench") as host:
            # The host steps `up` runs before the containers: directories, generated files, seeds, secret files.
            steps = ("storage-dirs", "storage-files", "storage-seeds", "storage-secrets")
            target = Target(engine.client, Path(host), engine.socket, run_commands=steps)
            start = time.monotonic()
            applied = apply(plan, target)
            applied_s = time.monotonic() - start
            healthy_at: dict[str, float] = {}
            while time.monotonic() - start < DEADLINE_S and len(healthy_at) < len(names):
                for name in names:
                    if name in healthy_at:
                        continue
                    try:
                        state = engine.client.api.inspect_container(name)["State"]
                    except Exception:
                        continue
                    if state.get("Health", {}).get("Status", "healthy" if state["Running"] else "") == "healthy":
                        healthy_at[name] = time.monotonic() - start
                time.sleep(1)
        print(f"stack {args.stack}: {len(names)} containers; stand-in images built in {built:.1f} s")
        print(f"apply (create, connect, upload, start in dependency order): {applied_s:.1f} s")
        if applied.errors:
            print(f"refused by the engine: {len(applied.errors)}")
            for name, error in sorted(applied.errors.items()):
                print(f"  {name}: {error[:160]}")
        missing = sorted(set(names) - set(healthy_at))
        if missing:
            print(f"not healthy after {DEADLINE_S} s: {', '.join(missing)}")
        else:
            print(f"start to all healthy: {max(healthy_at.values()):.1f} s")
        for name, seconds in sorted(healthy_at.items(), key=lambda item: -item[1])[:5]:
            print(f"  {name}: healthy at {seconds:.1f} s")
        return 0 if not missing and not applied.errors else 1
    finally:
        dockerd.stop(engine)


if __name__ == "__main__":
    sys.exit(main())
