"""The policy pack over the analyzer protocol, next to the plan without it, in the same run.

    .venv/bin/python bench/policy_bench.py [--runs 5] [--stack prod]

plan      - the program under the mocks (no pack), in this process after imports;
pack      - starting the pack process, GetAnalyzerInfo and Configure, Analyze for every resource and
            AnalyzeStack: what `mediastack plan` adds when it runs the pack;
of which  - the same without the process start (Analyze + AnalyzeStack on a running pack).
Medians of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediastack_cli.analyzer import PolicyPack, run_pack  # noqa: E402
from mediastack_cli.offline import read_stack, run_program  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    files = read_stack(ROOT, args.stack)
    resources = run_program(files).resources
    custom = [r for r in resources if r.custom]

    plan_s = [timed(lambda: run_program(files)) for _ in range(args.runs)]
    pack_s = [timed(lambda: run_pack(ROOT / "policies", resources)) for _ in range(args.runs)]
    with PolicyPack(ROOT / "policies") as pack:
        pack.configure({})

        def analyze_all() -> None:
            for r in custom:
                pack.analyze(r)
            pack.analyze_stack(custom)

        analyze_s = [timed(analyze_all) for _ in range(args.runs)]
        policies = len(pack.info.policies) if pack.info else 0

    plan_m, pack_m, analyze_m = (statistics.median(x) for x in (plan_s, pack_s, analyze_s))
    print(
        f"stack {args.stack}: {len(resources)} resources ({len(custom)} analyzed), {policies} policies; "
        f"median of {args.runs}"
    )
    print(f"{'plan without the pack':<44}{plan_m * 1000:>9.1f} ms")
    print(f"{'pack: start + configure + analyze + stack':<44}{pack_m * 1000:>9.1f} ms")
    print(
        f"{'  of which Analyze x N + AnalyzeStack':<44}{analyze_m * 1000:>9.1f} ms "
        f"({analyze_m / len(custom) * 1000:.2f} ms per resource)"
    )
    print(f"pack / plan: {pack_m / plan_m:.2f}x")


if __name__ == "__main__":
    main()
