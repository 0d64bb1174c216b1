"""The VPN stack on a real Docker engine: a single host with `downloads.vpn` (Pulumi.home.yaml's VPN settings,
the dev stack's host and only the downloads bundle), applied as pulumi-docker applies it, with stand-ins that
keep gluetun's facts (tests/standins.py `build_gluetun`: root, NET_ADMIN, /dev/net/tun, its health and control
servers) and the download clients' (their app on their port, an init that ends on SIGTERM).

What it proves on the engine: the clients run in gluetun's network namespace and nothing else; when gluetun
stops they reach nothing; when it returns, the clients' own health check (mediastack/plan/resolve.py `_through_vpn`)
finds the namespace they hold dead, ends them, and the restart policy the program sets brings them back in
gluetun's new namespace. A gluetun replaced by `pulumi up` (a new container, the same name) replaces the clients,
whose input is gluetun's id, so they join the new one. A client whose restart failed while gluetun was down
longer than its check allows stays exited (the engine does not try again) until the host's rejoin
(mediastack/host/vpn_guard.sh `rejoin`) starts it once gluetun is healthy; a container a user stopped, or one
not labelled as a download client, it leaves alone."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import standins
from engine_apply import CONTAINER, Applied, Target, apply, destroy, unsealed_plan

import dockerd
from conftest import ROOT, raw_config
from mediastack_cli.offline import StackFiles
from mediastack_vocabulary import Label

pytestmark = pytest.mark.engine

VPN = "gluetun"
GRACE_S = 20  # engine scheduling on 2 busy cores, beyond the checks' own interval, timeout and start period
PRIVATE_KEY = "engine-test-wireguard-key="


def _seconds(text: str) -> float:
    return float(text[:-1]) * (60 if text.endswith("m") else 1)


def vpn_stack(**vpn: Any) -> StackFiles:
    """The dev host with the downloads bundle only, behind the VPN Pulumi.home.yaml configures (its key, a
    Pulumi secret there, replaced by a test value; `vpn` changes more of its settings)."""
    config = raw_config("dev")
    config["bundles"] = ["downloads"]
    config["downloads"]["vpn"] = {
        **raw_config("home")["downloads"]["vpn"],
        "wireguard_private_key": PRIVATE_KEY,
        **vpn,
    }
    cli = {f"mediastack:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    return StackFiles(ROOT, "mediastack", "vpn", cli, frozenset())


class VpnStack:
    def __init__(self, engine, host_root: Path):
        self.engine = engine
        self.plan = unsealed_plan(vpn_stack())
        standins.build_all(engine, self.plan)
        # The host steps `up` runs before the containers: directories, generated files (the socket proxy's
        # template), seeds, secret files (gluetun's WIREGUARD_PRIVATE_KEY_SECRETFILE).
        steps = ("storage-dirs", "storage-files", "storage-seeds", "storage-secrets")
        self.target = Target(engine.client, host_root, engine.socket, run_commands=steps)
        self.applied: Applied = apply(self.plan, self.target)
        self.containers = {r.inputs["name"]: r.inputs for r in self.plan.resources if r.type == CONTAINER}
        # By their role, not by how they name gluetun (what the tests below check).
        self.clients = sorted(
            n for n, i in self.containers.items() if {"label": Label.role, "value": "download_client"} in i["labels"]
        )
        vpn_id = next(r.id for r in self.plan.resources if r.type == CONTAINER and r.inputs["name"] == VPN)
        self.planned_mode = f"container:{vpn_id}"  # the mocks' id, which apply maps to the engine's

    def inspect(self, name: str) -> dict:
        return self.engine.client.api.inspect_container(name)

    def health(self, name: str) -> str:
        state = self.inspect(name)["State"]
        return state.get("Health", {}).get("Status", state["Status"])

    def run(self, name: str, command: str) -> tuple[int, str]:
        done = self.engine.client.containers.get(name).exec_run(["sh", "-c", command])
        return done.exit_code, done.output.decode(errors="replace").strip()

    def netns(self, name: str) -> str:
        code, out = self.run(name, "readlink /proc/1/ns/net")
        assert code == 0, (name, out)
        return out

    def reaches(self, name: str, url: str) -> bool:
        code, out = self.run(name, f"timeout -s KILL 5 busybox wget -q -O - {url}; exit $?")
        return code == 0 and out == "world"

    def logs(self, name: str) -> str:
        return self.engine.client.containers.get(name).logs(tail=8).decode(errors="replace")

    def wait(self, ready, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if ready():
                return True
            time.sleep(2)
        return bool(ready())

    def check_s(self, name: str, *parts: str) -> float:
        check = self.containers[name]["healthcheck"]
        return sum(_seconds(check[p]) for p in parts)

    def all_healthy(self) -> bool:
        return all(self.health(n) == "healthy" for n in self.containers)


@pytest.fixture(scope="module")
def vpn(docker_engine, tmp_path_factory):
    stack = VpnStack(docker_engine, tmp_path_factory.mktemp("host"))
    try:
        limit = max(stack.check_s(n, "startPeriod", "interval", "timeout") for n in stack.containers) + GRACE_S
        stack.wait(stack.all_healthy, limit)
        yield stack
    finally:
        destroy(stack.applied, docker_engine.client)


def test_the_vpn_stack_is_accepted_and_healthy_with_gluetuns_facts(vpn):
    assert not vpn.applied.errors, vpn.applied.errors
    assert vpn.clients == ["qbittorrent", "sabnzbd"]
    assert {vpn.containers[c]["networkMode"] for c in vpn.clients} == {vpn.planned_mode}
    status = {n: vpn.health(n) for n in vpn.containers}
    assert all(s == "healthy" for s in status.values()), {n: (s, vpn.logs(n)) for n, s in status.items()}
    assert {n: vpn.inspect(n)["RestartCount"] for n in vpn.containers} == dict.fromkeys(vpn.containers, 0)
    host = vpn.inspect(VPN)["HostConfig"]
    assert "CAP_NET_ADMIN" in host["CapAdd"] or "NET_ADMIN" in host["CapAdd"]
    if Path("/dev/net/tun").exists():
        assert [d["PathOnHost"] for d in host["Devices"]] == ["/dev/net/tun"]
        # The stand-in made its tunnel device with the capability and the device the program gives it.
        code, out = vpn.run(VPN, "/usr/sbin/ip -o link show tun0")
        assert code == 0, (out, vpn.logs(VPN))
    else:  # recorded as a GPU device this machine lacks is
        assert vpn.target.lowered[f"{VPN}-container /dev/net/tun"] == "device absent on this machine, left out"


def test_the_download_clients_live_in_gluetuns_namespace_and_nothing_else(vpn):
    gluetun = vpn.inspect(VPN)
    for name in vpn.clients:
        state = vpn.inspect(name)
        assert state["HostConfig"]["NetworkMode"] == f"container:{gluetun['Id']}", name
        assert state["NetworkSettings"]["Networks"] == {}, name  # no endpoint of its own: no way around it
        assert vpn.netns(name) == vpn.netns(VPN), name
    with vpn.engine.outside_world() as url:
        for name in vpn.clients:
            assert vpn.reaches(name, url), name  # through gluetun's interfaces only


def _addresses(vpn: VpnStack, name: str) -> list[str]:
    code, out = vpn.run(name, "ip -o -4 addr show")
    assert code == 0, out
    return sorted(line.split()[3] for line in out.splitlines())


def test_clients_reach_nothing_when_gluetun_stops_and_rejoin_it_when_it_returns(vpn):
    before = {n: vpn.inspect(n)["RestartCount"] for n in vpn.clients}
    with vpn.engine.outside_world() as url:
        vpn.engine.client.containers.get(VPN).stop(timeout=10)
        assert vpn.inspect(VPN)["State"]["Status"] == "exited"
        for name in vpn.clients:
            # The namespace the client holds lost every interface the engine gave gluetun: loopback only.
            assert _addresses(vpn, name) == ["127.0.0.1/8"], name
            assert not vpn.reaches(name, url), name
        vpn.engine.client.containers.get(VPN).start()
        # The clients' check (every `interval`) finds gluetun's control server gone from the namespace they
        # hold, ends PID 1; the restart policy starts them again in gluetun's new namespace; healthy after the
        # next interval.
        for name in vpn.clients:
            limit = vpn.check_s(name, "interval", "timeout") * 2 + vpn.check_s(name, "startPeriod") + GRACE_S
            rejoined = vpn.wait(
                lambda n=name: vpn.inspect(n)["RestartCount"] > before[n] and vpn.health(n) == "healthy", limit
            )
            state = vpn.inspect(name)
            assert rejoined, (name, state["RestartCount"], vpn.health(name), vpn.logs(name))
            assert state["HostConfig"]["RestartPolicy"]["Name"] == vpn.containers[name]["restart"]
            assert vpn.netns(name) == vpn.netns(VPN), name
            assert vpn.reaches(name, url), name


def _engine_state(vpn: VpnStack, name: str) -> tuple[str, dict]:
    """A container's applied inputs (as the engine received them) and its engine id, by container name."""
    (found,) = [(i, ident) for i, ident in vpn.applied.state.values() if i.get("name") == name]
    return found


def test_a_replaced_gluetun_replaces_the_clients_and_they_join_its_namespace(vpn):
    """`pulumi up` after a change that replaces gluetun: a new container under the same name, a new id. The
    clients' input is `container:<gluetun's id>`, so it changes with the id and they are replaced too (the
    provider's network_mode is ForceNew), now in the new gluetun's namespace. With `container:gluetun` (the
    program's earlier input) their input does not change here, and this test fails: they are not replaced."""
    old_id = vpn.inspect(VPN)["Id"]
    changed = unsealed_plan(vpn_stack(server_countries=["Sweden"]))  # a new gluetun environment: a replacement
    calls = len(vpn.applied.calls)
    apply(changed, vpn.target, vpn.applied)
    assert not vpn.applied.errors, vpn.applied.errors
    new_id = vpn.inspect(VPN)["Id"]
    assert new_id != old_id
    replaced = {name for verb, name, _ in vpn.applied.calls[calls:] if verb == "delete"}
    assert replaced == {"media-gluetun-container", *(f"media-{c}-container" for c in vpn.clients)}, replaced
    limit = max(vpn.check_s(n, "startPeriod", "interval", "timeout") for n in vpn.clients) + GRACE_S
    with vpn.engine.outside_world() as url:
        for name in vpn.clients:
            inputs, _ = _engine_state(vpn, name)
            state = vpn.inspect(name)
            # What the engine stores (and the provider reads back) is the input: no diff on the next `up`.
            assert state["HostConfig"]["NetworkMode"] == inputs["networkMode"] == f"container:{new_id}", name
            assert vpn.netns(name) == vpn.netns(VPN), name
            assert vpn.reaches(name, url), name
            assert vpn.wait(lambda n=name: vpn.health(n) == "healthy", limit), (name, vpn.logs(name))
    # The same plan again changes nothing.
    calls = len(vpn.applied.calls)
    apply(changed, vpn.target, vpn.applied)
    assert vpn.applied.calls[calls:] == []


def rejoin(vpn: VpnStack, sandbox: Path) -> str:
    """The plan's VPN guard step run as pulumi-command runs it, with ROOT at a sandbox (it installs the tool and
    its units there), then the installed tool's `rejoin` against the test's engine, with Debian's docker client."""
    (step,) = [r for r in vpn.plan.resources if r.name.endswith("-tuning-vpn-guard")]
    sandbox.mkdir(exist_ok=True)
    env = {**os.environ, "ROOT": str(sandbox)}
    done = subprocess.run(
        [*step.inputs["interpreter"], step.inputs["create"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    client = Path(dockerd.docker_client()).parent
    env = {**os.environ, "DOCKER_HOST": vpn.engine.host, "PATH": f"{client}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(sandbox / "usr/local/sbin/mediastack-vpn-guard"), "rejoin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _left_exited(vpn: VpnStack, name: str) -> bool:
    state = vpn.inspect(name)["State"]
    return state["Status"] == "exited" and bool(state["Error"])


def test_a_client_left_exited_by_a_long_outage_is_started_by_the_rejoin_and_nothing_else(vpn, tmp_path):
    """gluetun down longer than the client's check allows: the check ends the client, its restart fails and the
    engine never tries again, even once gluetun is back. The rejoin, once gluetun is healthy, starts it in
    gluetun's namespace; not a client a user stopped, nor a container without the download-client label."""
    client, stopped = vpn.clients  # qbittorrent, sabnzbd
    gluetun_id = vpn.inspect(VPN)["Id"]
    # A container a user stopped on purpose, and one in gluetun's namespace that dies with it as the client does
    # but is not labelled as a download client.
    vpn.engine.client.containers.get(stopped).stop(timeout=10)
    image = vpn.inspect(VPN)["Config"]["Image"]
    bystander = vpn.engine.client.containers.create(
        image,
        entrypoint=["/bin/sh", "-c", "while [ -e /sys/class/net/eth0 ]; do sleep 1; done; exit 1"],
        name="bystander",
        network_mode=f"container:{gluetun_id}",
        restart_policy={"Name": "unless-stopped"},
    )
    try:
        bystander.start()
        vpn.engine.client.containers.get(VPN).stop(timeout=10)
        limit = vpn.check_s(client, "interval", "timeout") * 2 + GRACE_S
        assert vpn.wait(lambda: _left_exited(vpn, client) and _left_exited(vpn, "bystander"), limit), (
            vpn.inspect(client)["State"],
            vpn.inspect("bystander")["State"],
        )
        error = vpn.inspect(client)["State"]["Error"]
        assert error == f"cannot join network of a non running container: {gluetun_id}", error
        # While gluetun is down the rejoin starts nothing.
        said = rejoin(vpn, tmp_path / "root")
        assert said.strip() == f"vpn-guard: {VPN} is exited (health: unhealthy): no client started until it is healthy"
        vpn.engine.client.containers.get(VPN).start()
        limit = vpn.check_s(VPN, "startPeriod", "interval", "timeout") + GRACE_S
        assert vpn.wait(lambda: vpn.health(VPN) == "healthy", limit), vpn.logs(VPN)
        # gluetun is back and healthy, and the engine has not retried the client: it stays exited for good.
        assert _left_exited(vpn, client), vpn.inspect(client)["State"]
        said = rejoin(vpn, tmp_path / "root")
        assert said.splitlines() == [
            f"vpn-guard: started {client} in {VPN}'s namespace (its restart had failed while {VPN} was down)"
        ], said
        with vpn.engine.outside_world() as url:
            assert vpn.inspect(client)["State"]["Running"]
            assert vpn.netns(client) == vpn.netns(VPN)
            assert vpn.reaches(client, url)
        limit = vpn.check_s(client, "startPeriod", "interval", "timeout") + GRACE_S
        assert vpn.wait(lambda: vpn.health(client) == "healthy", limit), vpn.logs(client)
        # Left alone: the client a user stopped (no error) and the container without the label.
        assert vpn.inspect(stopped)["State"]["Status"] == "exited" and not vpn.inspect(stopped)["State"]["Error"]
        assert _left_exited(vpn, "bystander")
        assert rejoin(vpn, tmp_path / "root") == ""  # nothing more to start
    finally:
        bystander.remove(force=True)
        if vpn.inspect(VPN)["State"]["Status"] != "running":
            vpn.engine.client.containers.get(VPN).start()
            vpn.wait(lambda: vpn.health(VPN) == "healthy", vpn.check_s(VPN, "startPeriod", "interval") + GRACE_S)
        vpn.engine.client.containers.get(stopped).start()
