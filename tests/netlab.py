"""A small internet in network namespaces, for proving download bandwidth control on a real kernel.

    dl (download client) ──┐ bridge ms-downloads
                           host ── up0 ══ modem ══ wan (iperf3 server, ping target)
    st (stream client)  ───┘ veth

`host` plays the Docker host: it forwards and masquerades like Docker does, and is where the stack's
mediastack-qos script runs. `modem` is the ISP line: a token bucket at the line rate with a deep buffer,
the bufferbloat that shaping on the host keeps empty. Every address lives only inside these namespaces;
the namespaces are removed on exit.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field

WAN_ADDR = "10.201.4.2"
_serial = itertools.count()


def _run(*args: str, ns: str | None = None, check: bool = True, timeout: float = 30, input: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Lab:
    """The namespaces above; line rates in bit/s."""

    line_up: int
    line_down: int
    interface: str = "up0"
    bridge: str = "ms-downloads"
    names: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Lab:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.names = {role: f"ms{role}{tag}" for role in ("host", "dl", "st", "modem", "wan")}
        try:
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in self.names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def ns(self, role: str) -> str:
        return self.names[role]

    def _veth(self, a: str, a_ns: str, b: str, b_ns: str) -> None:
        _run("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)

    def _build(self) -> None:
        n = self.names
        for ns in n.values():
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "set", "lo", "up", ns=ns)
        host = n["host"]
        # Download client behind the bridge Docker would have made
        _run("ip", "link", "add", self.bridge, "type", "bridge", ns=host)
        self._veth("vdl", host, "eth0", n["dl"])
        _run("ip", "link", "set", "vdl", "master", self.bridge, "up", ns=host)
        _run("ip", "addr", "add", "10.201.1.1/24", "dev", self.bridge, ns=host)
        _run("ip", "link", "set", self.bridge, "up", ns=host)
        # Stream client (another container network: not shaped as downloads)
        self._veth("vst", host, "eth0", n["st"])
        _run("ip", "addr", "add", "10.201.2.1/24", "dev", "vst", ns=host)
        _run("ip", "link", "set", "vst", "up", ns=host)
        for role, net in (("dl", 1), ("st", 2)):
            _run("ip", "addr", "add", f"10.201.{net}.2/24", "dev", "eth0", ns=n[role])
            _run("ip", "link", "set", "eth0", "up", ns=n[role])
            _run("ip", "route", "add", "default", "via", f"10.201.{net}.1", ns=n[role])
        # Host uplink to the modem, modem to the internet
        self._veth(self.interface, host, "m0", n["modem"])
        self._veth("m1", n["modem"], "w0", n["wan"])
        for ns, dev, addr in (
            (host, self.interface, "10.201.3.1/24"),
            (n["modem"], "m0", "10.201.3.2/24"),
            (n["modem"], "m1", "10.201.4.1/24"),
            (n["wan"], "w0", f"{WAN_ADDR}/24"),
        ):
            _run("ip", "addr", "add", addr, "dev", dev, ns=ns)
            _run("ip", "link", "set", dev, "up", ns=ns)
        _run("ip", "route", "add", "default", "via", "10.201.3.2", ns=host)
        _run("ip", "route", "add", "default", "via", "10.201.4.1", ns=n["wan"])
        for ns in (host, n["modem"]):
            _run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
        # Docker's masquerade: the download clients' source address is gone by the time packets leave.
        _run(
            "nft",
            "-f",
            "-",
            ns=host,
            input=f"""table ip lab_nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{self.interface}" masquerade
  }}
}}
""",
        )
        # The ISP line: rate-limited with a 200 ms deep buffer in each direction.
        for dev, rate in (("m1", self.line_up), ("m0", self.line_down)):
            _run(
                "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate}bit", "burst", "32k",
                "latency", "200ms", ns=n["modem"],
            )  # fmt: skip

    def run_script(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A shell script run inside the host namespace, as the Pulumi command runs it on a host."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns("host"), "sh", "-c", script, "mediastack-qos", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def qdiscs(self) -> str:
        return "".join(
            _run("tc", "qdisc", "show", "dev", dev, ns=self.ns("host")) for dev in (self.interface, self.bridge)
        )

    def nft_tables(self) -> str:
        return _run("nft", "list", "tables", ns=self.ns("host"))

    def iperf(self, seconds: float, reverse: bool = False, streams: int = 1) -> float:
        """Goodput in bit/s of a TCP transfer from (or, reverse, to) the download client's namespace.

        Cubic, the default of most hosts and clients: unlike BBR it fills whatever buffer it is given, which
        is the behaviour shaping has to tame."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("wan"), "iperf3", "--server", "--bind", WAN_ADDR],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):  # bounded: the server listens within a few milliseconds
                if ":5201" in _run("ss", "-Hltn", ns=self.ns("wan")):
                    break
                time.sleep(0.05)
            args = ["iperf3", "--client", WAN_ADDR, "--json", "--time", str(seconds), "--parallel", str(streams)]
            # The first second is TCP's slow start; leave it out of the figure.
            args += ["--omit", "1", "--congestion", "cubic"]
            if reverse:
                args.append("--reverse")
            out = json.loads(_run(*args, ns=self.ns("dl"), timeout=seconds + 20))
            if "error" in out:
                raise RuntimeError(f"iperf3: {out['error']}")
            return float(out["end"]["sum_received"]["bits_per_second"])
        finally:
            server.kill()
            server.wait(timeout=5)

    def ping_under(self, count: int, interval: float, load_seconds: float | None) -> tuple[list[float], float | None]:
        """Round-trip times (ms) of the stream client's pings to the internet, optionally while the download
        client uploads for load_seconds; returns the times and the upload's goodput."""
        ping = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("st"), "ping", "-n", "-c", str(count), "-i", str(interval), WAN_ADDR],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rate = self.iperf(load_seconds, streams=4) if load_seconds else None
        out, _ = ping.communicate(timeout=count * interval + 30)
        times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
        return times, rate


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.2f} ms, p99 {percentile(values, 99):.2f} ms"
