"""The socket proxy on a real Docker engine: Debian's haproxy with the image's own configuration
(tests/standins.py `build_socket_proxy`), in front of the test engine's socket, with the environment the program
gives it. What its readers need answers; everything else is refused with 403 before it reaches the engine."""

from __future__ import annotations

import dataclasses
import sys
import time

import docker.errors
import pytest
import standins
from engine_apply import CONTAINER, NETWORK, REMOTE_IMAGE, Target, apply, destroy, unsealed_plan

from conftest import ROOT
from mediastack_cli.offline import read_stack

pytestmark = pytest.mark.engine

NAME = "socket-proxy"
START_S = 60

# One request from the engine's network namespace to the proxy's address: prints the status code.
REQUEST = r"""
import http.client, sys
host, method, path = sys.argv[1:4]
connection = http.client.HTTPConnection(host, 2375, timeout=10)
connection.request(method, path, body=b"{}" if method in ("POST", "PUT") else None,
                   headers={"Content-Type": "application/json"})
response = connection.getresponse()
print(response.status, response.read(200).decode(errors="replace").replace("\n", " "))
"""


class Proxy:
    def __init__(self, engine, stack: str, host_root):
        self.engine = engine
        full = unsealed_plan(read_stack(ROOT, stack))
        (proxy,) = [r for r in full.resources if r.type == CONTAINER and r.inputs["name"] == NAME]
        networks = {n["name"] for n in proxy.inputs["networksAdvanced"]}
        # The host steps that make its directories and write its template (bound read-only at /templates).
        steps = ("storage-dirs", "storage-files")
        keep = [
            r
            for r in full.resources
            if r is proxy
            or (r.type == NETWORK and r.inputs["name"] in networks)
            or (r.type == REMOTE_IMAGE and r.urn in proxy.dependencies)
            or (r.type.startswith("command:") and r.name.endswith(steps))
        ]
        self.plan = dataclasses.replace(full, resources=keep)
        self.env = dict(line.split("=", 1) for line in proxy.inputs["envs"])
        standins.build_all(engine, self.plan)
        self.applied = apply(self.plan, Target(engine.client, host_root, engine.socket, run_commands=steps))
        assert not self.applied.errors, self.applied.errors
        deadline = time.monotonic() + START_S
        while self.health() != "healthy" and time.monotonic() < deadline:
            time.sleep(1)
        network = sorted(networks)[0]
        self.address = self.inspect()["NetworkSettings"]["Networks"][network]["IPAddress"]

    def inspect(self) -> dict:
        return self.engine.client.api.inspect_container(NAME)

    def health(self) -> str:
        return self.inspect()["State"].get("Health", {}).get("Status", "")

    def request(self, method: str, path: str) -> tuple[int, str]:
        done = self.engine.netexec(sys.executable, "-c", REQUEST, self.address, method, path)
        assert done.returncode == 0, done.stderr
        status, _, body = done.stdout.strip().partition(" ")
        return int(status), body


@pytest.fixture(scope="module", params=["prod", "dev"])
def proxy(request, docker_engine, tmp_path_factory):
    running = Proxy(docker_engine, request.param, tmp_path_factory.mktemp("host"))
    try:
        yield running
    finally:
        destroy(running.applied, docker_engine.client)


def _logs(proxy: Proxy) -> str:
    return proxy.engine.client.containers.get(NAME).logs(tail=20).decode(errors="replace")


def test_haproxy_runs_the_image_configuration_and_is_healthy(proxy):
    assert proxy.health() == "healthy", _logs(proxy)
    assert proxy.inspect()["RestartCount"] == 0
    rendered = proxy.engine.client.containers.get(NAME).exec_run(["cat", "/run/haproxy/haproxy.cfg"])
    text = rendered.output.decode()
    # The stack's template (mediastack/generate/socket_proxy.py), bound over the image's and rendered by its entrypoint.
    assert text.startswith("# mediastack: the image's template, reads only"), text[:200]
    # The entrypoint's substitution (DISABLE_IPV6 unset: both families) and haproxy's own expansions left to it.
    assert "    bind [::]:2375 v4v6\n" in text and "@@" not in text
    assert "server socket $SOCKET_PATH" in text


def test_the_reads_its_readers_need_answer(proxy):
    """cAdvisor's Docker handler (mediastack/catalog/services.py: /info, /version, /containers/{id}/json) on the stack
    with cAdvisor; the ping the health check asks on every stack."""
    inspected = proxy.inspect()["Id"]
    reads = {"/_ping": "PING", "/v1.41/_ping": "PING", "/version": "VERSION", "/v1.41/info": "INFO"}
    reads |= {f"/v1.41/containers/{inspected}/json": "CONTAINERS", f"/containers/{NAME}/json": "CONTAINERS"}
    for path, switch in reads.items():
        status, body = proxy.request("GET", path)
        if proxy.env[switch] == "1":
            assert status == 200, (path, status, body)
        else:
            # Closed when no reader needs it (the dev stack has no cAdvisor).
            assert status == 403, (path, status, body)
    if proxy.env["CONTAINERS"] == "1":  # the engine's own answer came through
        status, body = proxy.request("GET", f"/v1.41/containers/{inspected}/json")
        assert body.startswith('{"Id":"' + inspected), body


REFUSED = [
    # Every method but GET, whatever the section (POST=0): creating, executing, starting, killing, deleting.
    ("POST", "/v1.41/containers/create?name=intruder"),
    ("POST", "/v1.41/containers/{id}/exec"),
    ("POST", "/v1.41/containers/{id}/kill"),
    ("POST", "/v1.41/containers/{id}/restart"),
    ("DELETE", "/v1.41/containers/{id}?force=1"),
    ("POST", "/v1.41/images/create?fromImage=busybox"),
    ("POST", "/v1.41/build"),
    ("PUT", "/v1.41/containers/{id}/archive?path=/"),
    ("POST", "/v1.41/secrets/create"),
    ("POST", "/v1.41/containers/{id}/attach?stream=1&stdout=1"),
    # With CONTAINERS on (cAdvisor's inspect), nothing else under /containers: no list, no file, log or process.
    ("GET", "/v1.41/containers/json"),
    ("GET", "/containers/json?all=1"),
    ("GET", "/v1.41/containers/{id}/archive?path=/"),
    ("HEAD", "/v1.41/containers/{id}/archive?path=/etc/passwd"),
    ("GET", "/v1.41/containers/{id}/export"),
    ("GET", "/v1.41/containers/{id}/logs?stdout=1&stderr=1"),
    ("GET", "/v1.41/containers/{id}/attach/ws?stream=1"),
    ("GET", "/v1.41/containers/{id}/top"),
    ("GET", "/v1.41/containers/{id}/changes"),
    ("GET", "/v1.41/containers/{id}/stats?stream=0"),
    ("GET", "/v1.41/containers/{id}/json/../logs"),
    ("GET", "/v1.41/containers/{id}%2Flogs/json"),
    # Reads of the sections it keeps closed.
    ("GET", "/v1.41/exec/0/json"),
    ("GET", "/v1.41/secrets"),
    ("GET", "/v1.41/configs"),
    ("GET", "/v1.41/images/json"),
    ("GET", "/v1.41/networks"),
    ("GET", "/v1.41/volumes"),
    ("GET", "/v1.41/services"),
    ("GET", "/v1.41/tasks"),
    ("GET", "/v1.41/nodes"),
    ("GET", "/v1.41/swarm"),
    ("GET", "/v1.41/plugins"),
    ("GET", "/v1.41/system/df"),
    ("GET", "/v1.41/events"),
]


def test_everything_else_is_refused_with_403_before_it_reaches_the_engine(proxy):
    ident = proxy.inspect()["Id"]
    before = {c.id for c in proxy.engine.client.containers.list(all=True)}
    refused = []
    for method, path in REFUSED:
        status, body = proxy.request(method, path.format(id=ident))
        if status != 403:
            refused.append(f"{method} {path}: {status} {body}")
    assert not refused, "\n".join(refused)
    # Nothing got through: no container created, the proxy itself neither killed nor restarted.
    assert {c.id for c in proxy.engine.client.containers.list(all=True)} == before
    state = proxy.inspect()
    assert state["State"]["Running"] and state["RestartCount"] == 0
    with pytest.raises(docker.errors.NotFound):
        proxy.engine.client.containers.get("intruder")
