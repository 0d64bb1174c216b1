"""`mediastack plan --stack prod`: wall time and peak memory, next to two floors measured in the same run.

    .venv/bin/python bench/plan_bench.py [--runs 5] [--stack prod]

Each measurement is a fresh Python process (so imports are paid every time, as a user pays them):
  import   - importing pulumi and pulumi_docker, nothing else;
  bare     - registering as many bare docker.Container resources as the plan has, under the same mocks
             (the engine's own cost per resource);
  plan     - the offline plan: read the stack files, validate, run __main__.py under the mocks
             (--no-policy; the policy pack's own cost is printed next to it and in bench/policy_bench.py).
Prints the median wall time and peak RSS of each, and plan/bare and plan/import ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(mode: str, stack: str, count: int) -> None:
    start = time.perf_counter()
    if mode == "import":
        import pulumi  # noqa: F401
        import pulumi_docker  # noqa: F401

        resources = 0
    elif mode == "bare":
        import pulumi_docker as docker
        from pulumi.runtime.stack import run_pulumi_func
        from pulumi.runtime.sync_await import _sync_await

        sys.path.insert(0, str(ROOT))
        from mediastack_cli.offline import Registration, start_mocks

        records: list[Registration] = []
        start_mocks("mediastack", stack, {}, frozenset(), records)

        def program() -> None:
            for i in range(count):
                docker.Container(f"c{i}", image="busybox:1.37")

        _sync_await(run_pulumi_func(program))
        resources = len(records)
    else:
        # The real command, in-process: typer and rich imports, config validation, the mocked program.
        import contextlib
        import io

        sys.path.insert(0, str(ROOT))
        from mediastack_cli.main import app

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            extra = [] if mode == "plan+pack" else ["--no-policy"]
            app(["plan", "--stack", stack, "--quiet", "--project", str(ROOT), *extra], standalone_mode=False)
        resources = int(printed.getvalue().split("resources")[0].split(":")[-1].strip())
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_mib": peak_kib / 1024, "resources": resources}))


def measure(mode: str, stack: str, count: int) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--stack", stack, "--count", str(count)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - start  # the whole process: interpreter start, imports, work
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--child")
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.stack, args.count)
        return

    resources = measure("plan", args.stack, 0)["resources"]
    rows = {}
    for mode in ("import", "bare", "plan", "plan+pack"):
        runs = [measure(mode, args.stack, int(resources)) for _ in range(args.runs)]
        rows[mode] = {
            "wall": statistics.median(r["wall"] for r in runs),
            "peak": statistics.median(r["peak_mib"] for r in runs),
            "resources": runs[0]["resources"],
        }
    print(f"stack {args.stack}: {resources} resources; median of {args.runs} fresh processes each")
    print(f"{'measurement':<44}{'wall s':>9}{'peak MiB':>10}{'resources':>11}")
    labels = {
        "import": "import pulumi + pulumi_docker",
        "bare": f"{resources} bare Containers (mocks)",
        "plan": f"mediastack plan --stack {args.stack} --no-policy",
        "plan+pack": "  the same with the policy pack",
    }
    for mode, row in rows.items():
        print(f"{labels[mode]:<44}{row['wall']:>9.3f}{row['peak']:>10.1f}{row['resources']:>11}")
    print(
        f"plan / bare containers: {rows['plan']['wall'] / rows['bare']['wall']:.2f}x wall, "
        f"{rows['plan']['peak'] / rows['bare']['peak']:.2f}x peak memory"
    )
    print(
        f"plan / import:          {rows['plan']['wall'] / rows['import']['wall']:.2f}x wall, "
        f"{rows['plan']['peak'] / rows['import']['peak']:.2f}x peak memory"
    )


if __name__ == "__main__":
    main()
