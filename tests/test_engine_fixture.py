"""The tests' own Docker engine does what the engine tests rely on: local images, health checks,
user networks with the tests' subnets, and internal networks with no way out."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import docker.errors
import pytest

import dockerd

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def busybox_image(docker_engine, tmp_path_factory) -> str:
    rootfs = dockerd.busybox_rootfs(tmp_path_factory.mktemp("rootfs"))
    dockerd.import_rootfs(docker_engine, rootfs, "mediastack-test/busybox:1", ('CMD ["sh"]',))
    return "mediastack-test/busybox:1"


def _wait_health(container, want: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "")
        if status == want:
            return status
        time.sleep(0.5)
    return status


def test_a_local_image_runs_and_its_health_check_decides(docker_engine, busybox_image):
    client = docker_engine.client
    network = client.networks.create(
        "fixture-front",
        driver="bridge",
        ipam={"Config": [{"Subnet": docker_engine.subnet()}]},  # type: ignore[dict-item]
    )
    container = client.containers.run(
        busybox_image,
        ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
        name="fixture-web",
        network=network.name,
        detach=True,
        healthcheck={
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
            "interval": 500_000_000,
            "timeout": 2_000_000_000,
            "retries": 2,
        },
    )
    try:
        assert _wait_health(container, "healthy") == "healthy"
        address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        assert ipaddress.ip_address(address) in dockerd.TEST_RANGE
        # The health check follows the app: stop serving and it turns unhealthy.
        container.exec_run(["rm", "/www/index.html"])
        assert _wait_health(container, "unhealthy") == "unhealthy"
    finally:
        container.remove(force=True)
        network.remove()


def test_an_internal_network_reaches_nothing_outside_itself(docker_engine, busybox_image):
    client = docker_engine.client
    networks = {
        internal: client.networks.create(
            f"fixture-{'internal' if internal else 'bridge'}",
            driver="bridge",
            internal=internal,
            ipam={"Config": [{"Subnet": docker_engine.subnet()}]},  # type: ignore[dict-item]
        )
        for internal in (True, False)
    }
    try:
        with docker_engine.outside_world() as url:
            # Busybox's wget has no timeout option here, so `timeout` bounds it; busybox's timeout execs the
            # program in its own pid, and pid 1 ignores signals: a shell that does not exec it stays pid 1.
            probe = ["sh", "-c", f"timeout -s KILL 5 wget -q -O - {url}; exit $?"]
            reached = client.containers.run(busybox_image, probe, network=networks[False].name, remove=True)
            assert reached.decode().strip() == "world"
            with pytest.raises(docker.errors.ContainerError):
                client.containers.run(busybox_image, probe, network=networks[True].name, remove=True)
    finally:
        for network in networks.values():
            network.remove()


def test_the_engine_is_stopped_by_its_pid_and_leaves_nothing(docker_engine, tmp_path: Path):
    engine = dockerd.start(Path("/tmp") / f"msd-stop-{tmp_path.name[-8:]}", worker=15)
    pid = engine.pid
    dockerd.stop(engine)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert not engine.root.exists()
