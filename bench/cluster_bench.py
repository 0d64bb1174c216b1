"""`mediastack plan` on synthetic clusters of 3, 10 and 50 hosts: wall time and peak memory.

    .venv/bin/python bench/cluster_bench.py [--runs 3] [--hosts 3 10 50]

Each stack (mediastack_cli/synthetic.py: three managers holding the GlusterFS bricks, an Intel GPU on every
tenth host, the whole catalog) is written as Pulumi.syn<N>.yaml into a copy of the project, and the real
command runs in a fresh process, `mediastack plan --stack syn<N> --quiet` with the policy pack and with
--no-policy. Prints the resource count and, for each, the median wall time and peak RSS (from wait4: the
largest resident set of the command's process and of the processes it waited for, the pack's included).
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediastack_cli.synthetic import synthetic_cluster  # noqa: E402

COPY = ("Pulumi.yaml", "__main__.py", "components", "mediastack", "policies", "images", "mediastack_cli")


def project(tmp: Path, sizes: list[int]) -> Path:
    dest = tmp / "project"
    dest.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "venv"))
        else:
            shutil.copy(src, dest / name)
    for n in sizes:
        config = {f"mediastack:{k}": v for k, v in synthetic_cluster(n).items()}
        (dest / f"Pulumi.syn{n}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return dest


def run(project_dir: Path, stack: str, policy: bool) -> dict[str, float]:
    command = [str(ROOT / ".venv/bin/mediastack"), "plan", "--stack", stack, "--quiet", "--project", str(project_dir)]
    if not policy:
        command.append("--no-policy")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project_dir)
    # wait4: the peak RSS of the command's process and of the children it reaped (the policy pack's process).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stack}: plan failed\n{out}\n{err}")
    resources = int(out.split("resources")[0].split(":")[-1].strip())
    return {"wall": wall, "peak_mib": usage.ru_maxrss / 1024, "resources": resources}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10, 50])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project_dir = project(Path(tmp), args.hosts)
        print(f"{'hosts':>5} {'resources':>9} {'plan s':>8} {'plan MiB':>9} {'+pack s':>8} {'+pack MiB':>9}")
        for n in args.hosts:
            bare = [run(project_dir, f"syn{n}", policy=False) for _ in range(args.runs)]
            full = [run(project_dir, f"syn{n}", policy=True) for _ in range(args.runs)]
            print(
                f"{n:>5} {int(bare[0]['resources']):>9} {statistics.median(r['wall'] for r in bare):>8.2f} "
                f"{statistics.median(r['peak_mib'] for r in bare):>9.1f} "
                f"{statistics.median(r['wall'] for r in full):>8.2f} "
                f"{statistics.median(r['peak_mib'] for r in full):>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
