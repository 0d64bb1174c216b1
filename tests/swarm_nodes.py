"""Swarm nodes as containers on the tests' engine, each running a Docker engine of its own.

`--privileged` is refused on this kind of machine (its bounding set lacks CAP_SYS_RESOURCE), so a node gets
what an inner dockerd needs one by one: every other capability, seccomp and AppArmor unconfined, every
device allowed by the device cgroup, and its cgroup mounts (read-only in a container) remounted read-write
by its entrypoint. The image is busybox-static with Debian's dockerd, containerd, runc, docker-init,
docker-proxy and iptables (nft) copied in with their libraries (tests/dockerd.py `copy_program`); the root
filesystem is built once and cached by the programs' sizes and times.

Each node's data root and socket are bind mounts from this machine, so the tests reach every node's engine
through a socket of their own (and a node's images, loaded with `docker load`, stay out of the image).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

import dockerd

NODE_IMAGE = "mediastack-test/swarm-node:20.10"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "mediastack-tests"
PROGRAMS = (
    "/usr/sbin/dockerd",
    "/usr/bin/containerd",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/runc",
    "/usr/bin/docker-init",
    "/usr/sbin/docker-proxy",
    "/usr/sbin/xtables-nft-multi",
)
# Every capability but CAP_SYS_RESOURCE (capabilities(7); Docker's names without CAP_).
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]
START_TIMEOUT_S = 90.0
# Inside a node, the directory standing for its host's own disk (bind sources of the plan are taken under it);
# the shared filesystem (GlusterFS on the real cluster) is one directory of this machine mounted in every node.
HOST_ROOT = "/mediastack-host"

ENTRYPOINT = r"""#!/bin/sh
# A swarm node: the cgroup hierarchies writable (a container gets them read-only), then its own dockerd.
set -eu
# Each hierarchy is a read-only bind mount of the node's own cgroup: made writable in place.
for hierarchy in /sys/fs/cgroup/*; do
  mount -o remount,bind,rw "$hierarchy"
done
mkdir -p /run /var/run /tmp
# No registry: a task runs the node's loaded image without first trying a pull (whose timeout would hold
# every task in "preparing"); moby's own integration daemons (testutil/daemon) set the same.
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
# Its socket twice: /node for the tests outside, the usual path for what the node runs (the socket proxy).
# Its own bridges take subnets from the tests' range too.
exec dockerd --host=unix:///node/docker.sock --host=unix:///var/run/docker.sock --data-root=/var/lib/docker \
  --exec-root=/run/docker --storage-driver=vfs --log-level=warn --bip=10.213.200.1/24 \
  --default-address-pool=base=10.213.208.0/20,size=24 "$@"
"""


def _fingerprint() -> str:
    digest = hashlib.sha256(ENTRYPOINT.encode())
    for program in PROGRAMS:
        stat = Path(program).stat()
        digest.update(f"{program}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def node_rootfs_archive() -> Path:
    """The node's root filesystem as a tar archive, built once per set of Debian programs."""
    archive = CACHE / f"swarm-node-{_fingerprint()}.tar"
    if archive.exists():
        return archive
    for program in PROGRAMS:
        if not Path(program).exists():
            raise dockerd.EngineUnavailable(f"{program} is not installed (Debian packages docker.io, iptables)")
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(CACHE / f"build-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        # Every busybox applet: the host scripts the tests run on a node (`docker exec`) use many.
        listing = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout
        root = dockerd.busybox_rootfs(scratch, tuple(listing.split()))
        for program in PROGRAMS:
            dockerd.copy_program(root, program)
        xtables = Path("/usr/lib/x86_64-linux-gnu/xtables")
        if xtables.is_dir():
            shutil.copytree(xtables, root / str(xtables).lstrip("/"), dirs_exist_ok=True)
        for name in (
            "iptables",
            "iptables-save",
            "iptables-restore",
            "ip6tables",
            "ip6tables-save",
            "ip6tables-restore",
        ):
            (root / "usr" / "sbin" / name).symlink_to("xtables-nft-multi")
        for directory in ("var/lib/docker", "node", "etc/docker"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
        (root / "entrypoint").write_text(ENTRYPOINT)
        (root / "entrypoint").chmod(0o755)
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for child in sorted(root.iterdir()):
                tar.add(child, arcname=child.name)
        partial.rename(archive)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return archive


def node_image(engine: dockerd.Engine) -> str:
    """Imports the node image into the tests' engine (once per engine)."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.client.images.get(NODE_IMAGE)
        return NODE_IMAGE
    archive = node_rootfs_archive()
    engine.cli(
        "import",
        "--change",
        'ENTRYPOINT ["/entrypoint"]',
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        str(archive),
        NODE_IMAGE,
        timeout=300,
    )
    return NODE_IMAGE


@dataclass
class Node:
    name: str
    address: str
    container: str
    socket: Path
    disk: Path  # this machine's directory mounted at HOST_ROOT in the node
    client: docker.DockerClient = field(init=False)

    def __post_init__(self) -> None:
        # The API version given: the daemon is not asked before it answers.
        self.client = docker.DockerClient(base_url=f"unix://{self.socket}", version="1.41", timeout=120)

    def cli(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120) -> str:
        done = subprocess.run(
            [dockerd.docker_client(), "--host", f"unix://{self.socket}", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} on {self.name} exited {done.returncode}: {done.stderr.decode()[-1500:]}"
            )
        return done.stdout.decode()


@dataclass
class Nodes:
    engine: dockerd.Engine
    network: str
    nodes: list[Node]
    root: Path

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.client.close()
            with contextlib.suppress(docker.errors.NotFound):
                self.engine.client.api.remove_container(node.container, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.engine.client.api.remove_network(self.network)
        # The inner engines' files (root-owned, some read-only directories) go with the test root.
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


def start_nodes(
    engine: dockerd.Engine, names: list[str], root: Path, shared_mount: str | None = None, prefix: str = "swarm"
) -> Nodes:
    """One node container per name on a network of the tests' own range, each with its dockerd answering.
    With `shared_mount`, one directory (root/shared) is mounted there under every node's HOST_ROOT."""
    image = node_image(engine)
    subnet = engine.subnet()
    base = subnet.rsplit(".", 1)[0]
    network = engine.client.networks.create(
        f"{prefix}-nodes-{engine.worker}",
        driver="bridge",
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=f"{base}.1")]),
    )
    nodes = Nodes(engine, network.id, [], root)
    try:
        for n, name in enumerate(names):
            address = f"{base}.{11 + n}"
            data = root / name
            (data / "lib").mkdir(parents=True)
            (data / "socket").mkdir()
            (data / "disk").mkdir()
            binds = {
                str(data / "lib"): {"bind": "/var/lib/docker"},
                str(data / "socket"): {"bind": "/node"},
                str(data / "disk"): {"bind": HOST_ROOT},
            }
            if shared_mount:
                (root / "shared").mkdir(exist_ok=True)
                binds[str(root / "shared")] = {"bind": HOST_ROOT + shared_mount}
            created = engine.client.api.create_container(
                image,
                name=f"{prefix}-{name}-{engine.worker}",
                hostname=name,
                host_config=engine.client.api.create_host_config(
                    cap_add=CAPABILITIES,
                    security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                    device_cgroup_rules=["a *:* rwm"],
                    binds=binds,
                    tmpfs={"/run": "", "/tmp": ""},
                    network_mode=network.name,
                ),
                networking_config=engine.client.api.create_networking_config(
                    {network.name: engine.client.api.create_endpoint_config(ipv4_address=address)}
                ),
            )
            engine.client.api.start(created["Id"])
            nodes.nodes.append(Node(name, address, created["Id"], data / "socket" / "docker.sock", data / "disk"))
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes.nodes:
            while True:
                try:
                    if node.socket.exists() and node.client.ping():
                        break
                except Exception:  # not answering yet
                    pass
                state = engine.client.api.inspect_container(node.container)["State"]
                if not state["Running"] or time.monotonic() > deadline:
                    logs = engine.client.api.logs(node.container, tail=30).decode(errors="replace")
                    raise dockerd.EngineUnavailable(f"node {node.name}'s dockerd did not answer: {logs}")
                time.sleep(0.5)
    except BaseException:
        nodes.stop()
        raise
    return nodes


def load_images(source: dockerd.Engine, references: list[str], nodes: list[Node]) -> None:
    """`docker save` from the tests' engine, `docker load` into every node (no registry to pull from)."""
    done = subprocess.run(
        [dockerd.docker_client(), "--host", source.host, "save", *references],
        capture_output=True,
        timeout=300,
        check=True,
    )
    for node in nodes:
        node.cli("load", "-q", input=done.stdout, timeout=300)


def unavailable(reason: str) -> None:
    """Nodes that cannot start here: the test skips saying why, and fails under CI=true."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"the swarm nodes did not start (required in CI): {reason}")
    pytest.skip(f"the swarm nodes did not start here: {reason}")


def node_bind_source(source: str) -> str:
    """A bind source as a node sees it: what every Docker host has (its /sys, /proc, /dev, its engine's socket
    and data root) is the node's own; the rest is under HOST_ROOT, where the host steps made it."""
    system = ("/sys", "/proc", "/dev", "/var/run/docker.sock", "/run/docker.sock", "/var/lib/docker")
    if source.startswith(system):
        return source
    return HOST_ROOT + source
