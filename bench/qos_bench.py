"""Download bandwidth control on a real kernel: shaping off, then on, in the same run.

    .venv/bin/python bench/qos_bench.py [--line-up 100mbit] [--line-down 200mbit] [--cap-up 40mbit]
                                         [--cap-down 60mbit] [--seconds 6]

Needs root (network namespaces), iproute2, nftables, iperf3 and ping. The namespaces (tests/netlab.py)
model a Docker host between a download client, a stream client and an ISP line with a deep buffer; the
script under test is the `mediastack-qos` that `mediastack render` writes. For each direction it prints
the download client's throughput (4 cubic TCP flows) and the stream client's ping round trips to the
internet while that transfer runs, as p50/p99. Bounded: one transfer of --seconds per measurement.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mediastack.host.qos import qos_scripts  # noqa: E402
from mediastack.model.config import StackConfig  # noqa: E402
from mediastack.model.units import format_rate, parse_rate  # noqa: E402
from netlab import WAN_ADDR, Lab, percentile  # noqa: E402


def measure(lab: Lab, seconds: int, reverse: bool) -> tuple[float, list[float]]:
    interval = 0.1
    count = int((seconds + 1) / interval)
    ping = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("st"), "ping", "-n", "-c", str(count), "-i", str(interval), WAN_ADDR],
        stdout=subprocess.PIPE,
        text=True,
    )
    rate = lab.iperf(seconds, reverse=reverse, streams=4)
    out, _ = ping.communicate(timeout=count * interval + 30)
    times = [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]
    return rate, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--line-up", default="100mbit")
    parser.add_argument("--line-down", default="200mbit")
    parser.add_argument("--cap-up", default="40mbit")
    parser.add_argument("--cap-down", default="60mbit")
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    line_up, line_down = parse_rate(args.line_up), parse_rate(args.line_down)
    config = StackConfig.model_validate(
        {
            "domain": "media.example.org",
            "hosts": [
                {
                    "name": "bench",
                    "address": "bench.home.arpa",
                    "cpus": 2,
                    "memory": "4GiB",
                    "link": {"interface": "up0", "up": line_up, "down": line_down},
                }
            ],
            "downloads": {"max_up": args.cap_up, "max_down": args.cap_down},
        }
    )
    tool = qos_scripts(config)["qos.sh"]
    print(
        f"line {format_rate(line_up)} up / {format_rate(line_down)} down with a 200 ms buffer; "
        f"caps {args.cap_up} up / {args.cap_down} down; {args.seconds} s per transfer, 4 cubic flows"
    )
    print(f"{'direction':<10} {'shaping':<8} {'download client':>16} {'stream ping p50':>16} {'p99':>10}")
    with Lab(line_up=line_up, line_down=line_down) as lab:
        for reverse, label in ((False, "upload"), (True, "download")):
            for shaping in ("off", "on"):
                done = lab.run_script(tool, "apply" if shaping == "on" else "clear")
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                rate, times = measure(lab, args.seconds, reverse)
                print(
                    f"{label:<10} {shaping:<8} {rate / 1e6:>10.1f} Mbit/s {statistics.median(times):>13.2f} ms "
                    f"{percentile(times, 99):>7.2f} ms   ({len(times)} pings)"
                )
        lab.run_script(tool, "clear")
    return 0


if __name__ == "__main__":
    sys.exit(main())
