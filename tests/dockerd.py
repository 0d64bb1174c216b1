"""A Docker engine of the tests' own: Debian's dockerd on a private socket, data root and exec root.

No registry is reachable from the tests, so nothing is pulled: images are built locally (see
`import_rootfs`). Networks the tests create take their subnets from TEST_RANGE only, and the daemon
runs in a network namespace of its own (no uplink): its bridges, its iptables rules (which is how
Docker 20.10 isolates internal networks) and its published ports live there, and nothing it does reaches
beyond this machine or changes the host's own firewall. `Engine.netexec` runs a command in that namespace.

Use the `docker_engine` fixture (tests/conftest.py): one daemon per test session and xdist worker,
stopped by its pid at the end. Where no engine can start, a test that needs one skips with the reason,
and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

# The tests own this range: every network a test makes takes a /24 from it, numbered per worker.
TEST_RANGE = ipaddress.ip_network("10.213.0.0/16")
# subnet() hands out 8 /24s per worker from the range's first half; the engine picks its own networks'
# subnets from ENGINE_POOL; the outside world's /30s sit at the range's top.
ENGINE_POOL = "10.213.128.0/18"
BRIDGE_IP = "10.213.192.1/24"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EngineUnavailable(RuntimeError):
    """No engine can start here; the message says why."""


def unavailable_reason() -> str | None:
    """Why no engine can run here, or None when one can."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for program, package in (
        ("dockerd", "docker.io"),
        ("containerd", "docker.io"),
        ("runc", "docker.io"),
        ("iptables", "iptables"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            return f"{program} is not installed (Debian package {package})"
    return None


@dataclass
class Engine:
    root: Path
    pid: int
    netns: str
    worker: int = 0
    client: docker.DockerClient = field(init=False)
    _subnets: Iterator[ipaddress.IPv4Network] = field(init=False)

    def __post_init__(self) -> None:
        self.client = docker.DockerClient(base_url=self.host, timeout=120)
        # 8 /24s per worker (16 workers) below ENGINE_POOL: workers never collide.
        per_worker = list(TEST_RANGE.subnets(new_prefix=24))[self.worker * 8 : (self.worker + 1) * 8]
        self._subnets = iter(per_worker)  # type: ignore[arg-type]

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def subnet(self) -> str:
        """A fresh /24 from the tests' own range."""
        return str(next(self._subnets))

    def cli(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120) -> str:
        """Runs the docker client against this engine and returns its stdout."""
        done = subprocess.run(
            [docker_client(), "--host", self.host, *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def netexec(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs a host program inside the engine's network namespace (where its bridges are)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextlib.contextmanager
    def outside_world(self, port: int = 8099) -> Iterator[str]:
        """An HTTP server standing for "the internet": in a namespace of its own, linked to the engine's
        namespace by a veth pair and reached from a container only when the engine forwards its traffic
        (an address of the engine's own namespace would not do: Docker 20.10's internal networks only
        filter forwarded traffic). Yields its URL."""
        link = f"world{self.worker}"
        world = f"{self.netns}x"
        base = int(TEST_RANGE.network_address) + 2**16 - 4 * (self.worker + 1)  # a /30 at the range's top
        near, far = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
        commands = [
            ["ip", "netns", "add", world],
            ["ip", "-n", self.netns, "link", "add", link, "type", "veth", "peer", "name", f"{link}p", "netns", world],
            ["ip", "-n", self.netns, "addr", "add", f"{near}/30", "dev", link],
            ["ip", "-n", self.netns, "link", "set", link, "up"],
            ["ip", "-n", world, "addr", "add", f"{far}/30", "dev", f"{link}p"],
            ["ip", "-n", world, "link", "set", f"{link}p", "up"],
            ["ip", "-n", world, "link", "set", "lo", "up"],
            ["ip", "-n", world, "route", "add", "default", "via", near],
        ]
        try:
            for command in commands:
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)}: {done.stderr}")
            with tempfile.TemporaryDirectory() as www:
                (Path(www) / "index.html").write_text("world\n")
                httpd = ["busybox", "httpd", "-f", "-p", f"{far}:{port}", "-h", www]
                server = subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/{world}", *httpd],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    yield f"http://{far}:{port}/"
                finally:
                    server.kill()
                    server.wait(timeout=10)
        finally:
            subprocess.run(["ip", "-n", self.netns, "link", "del", link], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", world], capture_output=True, check=False)

    def log_tail(self, lines: int = 40) -> str:
        log = self.root / "dockerd.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def docker_client() -> str:
    """Debian's docker client (matches the 20.10 daemon); any other on PATH otherwise."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise EngineUnavailable("no docker client is installed (Debian package docker.io)")


def start(root: Path | None = None, worker: int = 0) -> Engine:
    """Starts a dockerd of its own under `root` (a new temporary directory by default) and waits for it."""
    reason = unavailable_reason()
    if reason:
        raise EngineUnavailable(reason)
    # Unix sockets are limited to ~108 bytes: keep the root short.
    root = root or Path(tempfile.mkdtemp(prefix="msd", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    pidfile = root / "dockerd.pid"
    netns = f"msd{os.getpid()}w{worker}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, capture_output=True)
    log = (root / "dockerd.log").open("wb")
    # nsenter switches only the network namespace (`ip netns exec` would also remount /sys, hiding the
    # cgroup mounts dockerd needs).
    process = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={pidfile}",
            f"--host=unix://{root / 'docker.sock'}",
            "--storage-driver=vfs",
            # The default bridge (pulumi-docker creates every container on it before connecting its networks)
            # and the engine's own network pool, both in the tests' range, apart from `subnet()`'s share.
            f"--bip={BRIDGE_IP}",
            f"--default-address-pool=base={ENGINE_POOL},size=24",
            "--log-level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if (root / "docker.sock").exists():
            try:
                engine = Engine(root, process.pid, netns, worker)
                engine.client.ping()
                return engine
            except Exception:  # not answering yet
                engine = None
        time.sleep(0.25)
    text = (root / "dockerd.log").read_text(errors="replace")[-2000:]
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
    raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s: {text}")


def stop(engine: Engine) -> None:
    """Stops the daemon by its pid (its containers with it) and removes everything under its root."""
    with contextlib.suppress(Exception):
        engine.client.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(engine.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(engine.pid):
        time.sleep(0.2)
    if _alive(engine.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(engine.pid, signal.SIGKILL)
    # Whatever the daemon left mounted under its roots goes before the files do.
    for mount in reversed(_mounts_under(engine.root)):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(engine.root, ignore_errors=True)
    subprocess.run(["ip", "netns", "del", engine.netns], check=False, capture_output=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child counts as gone.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    return [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]


def import_rootfs(engine: Engine, rootfs: Path, reference: str, changes: tuple[str, ...] = ()) -> str:
    """Imports a directory as an image named `reference` (e.g. the real image's name and tag).

    `changes` are Dockerfile instructions applied on import (USER, ENTRYPOINT, CMD, ENV, WORKDIR).
    """
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name)
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        return engine.cli(*args, str(archive), reference).strip()


APPLETS = ("sh", "wget", "httpd", "sleep", "cat", "id", "rm", "mkdir", "ls", "ip", "nc", "ps", "timeout")


def busybox_rootfs(target: Path, applets: tuple[str, ...] = APPLETS) -> Path:
    """A minimal root filesystem from Debian's busybox-static: /bin/busybox and the named applets."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        raise EngineUnavailable("busybox is not installed (Debian package busybox-static)")
    (target / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, target / "bin" / "busybox")
    for applet in applets:
        link = target / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for directory in ("etc", "tmp", "proc", "sys", "dev", "run"):
        (target / directory).mkdir(exist_ok=True)
    (target / "tmp").chmod(0o1777)
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (target / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return target


def copy_program(target: Path, program: str, dest: str | None = None) -> Path:
    """Copies a Debian program and the shared libraries `ldd` lists into a root filesystem (no debootstrap)."""
    source = Path(shutil.which(program) or program)
    if not source.exists():
        raise EngineUnavailable(f"{program} is not installed")
    placed = target / (dest or str(source)).lstrip("/")
    placed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, placed)
    listing = subprocess.run(["ldd", str(source)], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        words = line.split()
        library = next((w for w in words if w.startswith("/")), None)
        if library and Path(library).exists():
            copy = target / library.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            if not copy.exists():
                shutil.copy2(Path(library).resolve(), copy)
    return placed
