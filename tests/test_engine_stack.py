"""The single-host stacks on a real Docker engine: the program's plan applied as pulumi-docker applies it
(tests/engine_apply.py) with stand-in images that keep the real images' facts (tests/standins.py).

Generic over the plan: every container, network and image the program registers is applied and checked, so
these tests follow the program as it changes."""

from __future__ import annotations

import json
import os
import shlex
import time
import urllib.parse
from pathlib import Path

import docker.errors
import pytest
import standins
import yaml
from engine_apply import CONTAINER, NETWORK, Applied, Target, apply, destroy, engine_informed_plan

from conftest import ROOT, host_written_files
from mediastack_cli.offline import read_stack

pytestmark = pytest.mark.engine

STORAGE_COMMAND = "storage-dirs"
# The host steps that write what the real programs read: the generated configs, the apps' first-start seeds and
# the secret files.
FILES_COMMANDS = ("storage-files", "storage-seeds", "storage-secrets")
HEALTH_GRACE_S = 15  # beyond a check's start period, interval and timeout: engine scheduling on 2 busy cores


def _seconds(text: str) -> float:
    return float(text.rstrip("s")) if text.endswith("s") and not text.endswith("ms") else float(text[:-1]) * 60


class Deployed:
    def __init__(self, engine, stack: str, host_root: Path):
        self.engine = engine
        host_root.chmod(0o755)  # as a host's / (node-exporter reads it as nobody at /host)
        # Networks first, as `pulumi up` makes them before what reads their outputs (a bridge's gateway).
        self.applied: Applied = Applied()
        self.plan = engine_informed_plan(read_stack(ROOT, stack), engine.client, self.applied)
        standins.build_all(engine, self.plan)
        self.target = Target(engine.client, host_root, engine.socket, run_commands=(STORAGE_COMMAND, *FILES_COMMANDS))
        apply(self.plan, self.target, self.applied)
        self.started = time.monotonic()

    @property
    def containers(self) -> dict[str, dict]:
        return {r.inputs["name"]: r.inputs for r in self.plan.resources if r.type == CONTAINER}

    def inspect(self, name: str) -> dict:
        """The engine's view of a container; a container the engine refused reads as never started."""
        try:
            return self.engine.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return {"Id": "", "RestartCount": 0, "Mounts": [], "State": {"Status": "missing", "StartedAt": ""}}


@pytest.fixture(scope="module", params=["dev", "prod"])
def dev(request, docker_engine, tmp_path_factory):
    missing = [reason for name in standins.REAL_PROGRAMS if (reason := standins.real_program_reason(name))]
    if missing:  # a stand-in that runs the real program needs its Debian package (.ci/run installs them)
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {'; '.join(missing)}")
        pytest.skip("; ".join(missing))
    deployed = Deployed(docker_engine, request.param, tmp_path_factory.mktemp("host"))
    try:
        yield deployed
    finally:
        destroy(deployed.applied, docker_engine.client)


def test_every_resource_is_accepted_by_the_engine(dev):
    # The engine's own message for each refusal (e.g. an upload into a read-only root filesystem).
    refused = "\n".join(f"{name}: {error}" for name, error in sorted(dev.applied.errors.items()))
    assert not dev.applied.errors, refused


def test_containers_start_in_the_order_of_their_recorded_dependencies(dev):
    created = {name: n for n, (verb, name, _) in enumerate(dev.applied.calls) if verb in ("create", "network")}
    by_urn = {r.urn: r for r in dev.plan.resources}
    checked = 0
    for resource in dev.plan.resources:
        if resource.type != CONTAINER or resource.name not in created:
            continue
        for dependency in resource.dependencies:
            needed = by_urn.get(dependency)
            if needed and needed.type in (CONTAINER, NETWORK):
                assert created.get(needed.name, 10**9) < created[resource.name], (resource.name, needed.name)
                checked += 1
    assert checked >= len(dev.containers)  # every container waits at least for its networks


def _wait_all_healthy(dev) -> dict[str, str]:
    limits = {
        name: _seconds(inputs["healthcheck"]["startPeriod"])
        + _seconds(inputs["healthcheck"]["interval"])
        + _seconds(inputs["healthcheck"]["timeout"])
        + HEALTH_GRACE_S
        for name, inputs in dev.containers.items()
        if inputs.get("healthcheck")
    }
    deadline = dev.started + max(limits.values(), default=HEALTH_GRACE_S)
    status: dict[str, str] = {}
    while True:
        status = {}
        for name in dev.containers:
            try:
                state = dev.inspect(name)["State"]
            except docker.errors.NotFound:
                status[name] = "missing"
                continue
            status[name] = state.get("Health", {}).get("Status", state["Status"])
        if all(s in ("healthy", "running") for s in status.values()) or time.monotonic() > deadline:
            return status
        time.sleep(2)


def _logs(dev, name: str) -> str:
    try:
        return dev.engine.client.containers.get(name).logs(tail=5).decode(errors="replace")
    except docker.errors.NotFound:
        return "(no container)"


def _health(dev, name: str) -> str:
    return dev.inspect(name)["State"].get("Health", {}).get("Status", "")


def test_every_container_becomes_healthy_within_its_start_period_without_restarts(dev):
    status = _wait_all_healthy(dev)
    bad = {n: s for n, s in status.items() if s not in ("healthy", "running")}
    assert not bad, "\n".join(f"{n}: {s}: {_logs(dev, n).strip()[-300:]}" for n, s in sorted(bad.items()))
    for name, inputs in dev.containers.items():
        state = dev.inspect(name)
        assert state["RestartCount"] == 0, (name, _logs(dev, name))
        assert ("Health" in state["State"]) == bool(inputs.get("healthcheck")), name


def test_only_the_socket_proxy_mounts_the_docker_socket_and_read_only(dev):
    mounting = {}
    for name in dev.containers:
        for mount in dev.inspect(name)["Mounts"]:
            if mount.get("Source") == str(dev.engine.socket):
                mounting[name] = mount["RW"]
    assert mounting == {"socket-proxy": False}


def test_containers_on_internal_networks_only_have_no_route_out(dev):
    networks = {r.inputs["name"]: bool(r.inputs.get("internal")) for r in dev.plan.resources if r.type == NETWORK}
    enclosed = [
        n
        for n, i in dev.containers.items()
        if i.get("networksAdvanced") and all(networks[a["name"]] for a in i["networksAdvanced"])
    ]
    _wait_all_healthy(dev)
    running = {n for n in dev.containers if dev.inspect(n)["State"]["Status"] == "running"}
    open_ = [
        n
        for n, i in dev.containers.items()
        if n in running and any(not networks[a["name"]] for a in i.get("networksAdvanced", []))
    ]
    assert enclosed and open_
    with dev.engine.outside_world() as url:
        probe = ["sh", "-c", f"timeout -s KILL 5 busybox wget -q -O - {url}; exit $?"]
        reached = dev.engine.client.containers.get(open_[0]).exec_run(probe)
        assert (reached.exit_code, reached.output.decode().strip()) == (0, "world")
        for name in [n for n in enclosed if n in running]:
            blocked = dev.engine.client.containers.get(name).exec_run(probe)
            assert blocked.exit_code != 0, (name, blocked.output)


def _runs_as(name: str, inputs: dict) -> str:
    """The uid the app runs as: the container's user, PUID for linuxserver images (they drop to it), the user an
    entrypoint that starts as root drops to (the catalog's image facts: valkey, postgres), the image's own USER
    (its facts: FlareSolverr), else root."""
    from mediastack.catalog.services import CATALOG

    env = dict(line.split("=", 1) for line in inputs.get("envs") or [])
    facts = CATALOG[name].facts if name in CATALOG else None
    dropped = facts.user if facts is not None and facts.starts_as_root else ""
    own = facts.user if facts is not None and not facts.starts_as_root and facts.user[:1].isdigit() else ""
    return (inputs.get("user") or env.get("PUID") or dropped or own or "0").split(":")[0]


def test_host_directories_made_by_the_storage_script_are_writable_by_each_image_user(dev):
    _wait_all_healthy(dev)
    root = dev.target.host_root
    checked = 0
    for name, inputs in dev.containers.items():
        for mount in inputs.get("mounts", []):
            if mount["type"] != "bind" or mount.get("readOnly") or not mount["source"].startswith("/srv"):
                continue
            assert Path(str(root) + mount["source"]).is_dir(), (name, mount["source"])
            marker = Path(str(root) + mount["source"]) / ".standin-write"
            assert marker.exists(), (name, mount["source"], _logs(dev, name))
            assert str(marker.stat().st_uid) == _runs_as(name, inputs), (name, mount["source"])
            checked += 1
    assert checked > 0


def test_a_second_apply_changes_nothing(dev):
    def identity(name: str) -> tuple[str, str]:
        # A container restarting by itself changes StartedAt; that is the restart test's concern, not this one's.
        state = dev.inspect(name)
        return state["Id"], state["State"]["StartedAt"] if state["RestartCount"] == 0 else "restarting"

    before = {name: identity(name) for name in dev.containers}
    calls = len(dev.applied.calls)
    again = apply(
        engine_informed_plan(read_stack(ROOT, dev.plan.stack), dev.engine.client, dev.applied), dev.target, dev.applied
    )
    assert again.calls[calls:] == []
    after = {name: identity(name) for name in dev.containers}
    assert after == before


# -- Real programs from Debian in their stand-ins (tests/standins.py REAL_PROGRAMS) ------------------------------


def _fetch(dev, via: str, url: str, post: str | None = None, timeout: int = 10) -> tuple[int, str]:
    """An HTTP request from inside container `via` (busybox wget), as another container of the stack makes it."""
    data = f" --post-data {shlex.quote(post)}" if post is not None else ""
    command = f"timeout -s KILL {timeout} busybox wget -q -O -{data} {shlex.quote(url)}; exit $?"
    done = dev.engine.client.containers.get(via).exec_run(["sh", "-c", command])
    return done.exit_code, done.output.decode(errors="replace")


def _on_network(dev, network: str, besides: str) -> str:
    """A running container of the plan on `network`, other than `besides`."""
    for name, inputs in sorted(dev.containers.items()):
        attached = {a["name"] for a in inputs.get("networksAdvanced") or []}
        if name != besides and network in attached and dev.inspect(name)["State"]["Status"] == "running":
            return name
    raise AssertionError(f"no running container besides {besides} on {network}")


def _network_of(dev, name: str, role: str) -> str:
    (network,) = [a["name"] for a in dev.containers[name]["networksAdvanced"] if a["name"].endswith(role)]
    return network


def _generated(dev, path: str) -> dict:
    """A generated file the host step writes, by its path under the stack's config root (dev and prod differ)."""
    (text,) = [t for p, t in host_written_files(dev.plan).items() if p.endswith("/generated/" + path)]
    return yaml.safe_load(text)


@pytest.mark.parametrize("dev", ["prod"], indirect=True)  # the dev stack runs no monitoring
def test_the_real_prometheus_reports_every_scrape_target_up(dev):
    _wait_all_healthy(dev)
    config = _generated(dev, "prometheus/prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    via = _on_network(dev, _network_of(dev, "prometheus", "monitoring"), besides="prometheus")
    interval = _seconds(config["global"]["scrape_interval"])
    deadline = time.monotonic() + 2 * interval + HEALTH_GRACE_S
    targets: list[dict] = []
    while time.monotonic() < deadline:
        code, body = _fetch(dev, via, "http://prometheus:9090/api/v1/targets?state=active")
        assert code == 0, (via, body, _logs(dev, "prometheus"))
        targets = json.loads(body)["data"]["activeTargets"]
        if targets and all(t["health"] != "unknown" for t in targets):
            break
        time.sleep(3)
    # Every job of the generated file has targets, and every target answered its last scrape.
    assert {t["labels"]["job"] for t in targets} == jobs
    down = {
        f"{t['labels']['job']} {t['scrapeUrl']}": t["lastError"] or t["health"] for t in targets if t["health"] != "up"
    }
    assert not down, down


@pytest.mark.parametrize("dev", ["prod"], indirect=True)  # the dev stack runs no monitoring
def test_the_real_alertmanager_loads_its_config_and_prometheus_finds_it(dev):
    _wait_all_healthy(dev)
    generated = _generated(dev, "alertmanager/alertmanager.yml")
    via = _on_network(dev, _network_of(dev, "alertmanager", "monitoring"), besides="alertmanager")
    code, body = _fetch(dev, via, "http://alertmanager:9093/-/ready")
    assert code == 0, (body, _logs(dev, "alertmanager"))
    code, body = _fetch(dev, via, "http://alertmanager:9093/api/v2/status")
    assert code == 0, body
    loaded = yaml.safe_load(json.loads(body)["config"]["original"])
    assert loaded["route"]["receiver"] == generated["route"]["receiver"]
    assert [r["name"] for r in loaded["receivers"]] == [r["name"] for r in generated["receivers"]]
    assert len(loaded["inhibit_rules"]) == len(generated["inhibit_rules"])
    code, body = _fetch(dev, via, "http://prometheus:9090/api/v1/alertmanagers")
    assert code == 0, body
    active = [a["url"] for a in json.loads(body)["data"]["activeAlertmanagers"]]
    assert active == ["http://alertmanager:9093/api/v2/alerts"], active


def test_the_real_qbittorrent_takes_the_seeded_password(dev):
    _wait_all_healthy(dev)
    # The credentials the program's deploy-time wiring logs in with (the stack's generated password).
    (login,) = {
        (r.inputs["username"], r.inputs["password"])
        for r in dev.plan.resources
        if r.inputs.get("app") == "qbittorrent" and "password" in r.inputs
    }
    web = dev.containers["qbittorrent"]
    port = dict(line.split("=", 1) for line in web["envs"])["WEBUI_PORT"]
    via = _on_network(dev, _network_of(dev, "qbittorrent", "backend"), besides="qbittorrent")
    url = f"http://qbittorrent:{port}/api/v2/auth/login"
    code, body = _fetch(dev, via, url, urllib.parse.urlencode({"username": login[0], "password": login[1] + "x"}))
    assert (code, body) == (0, "Fails."), _logs(dev, "qbittorrent")
    code, body = _fetch(dev, via, url, urllib.parse.urlencode({"username": login[0], "password": login[1]}))
    assert (code, body) == (0, "Ok."), _logs(dev, "qbittorrent")


@pytest.mark.parametrize("dev", ["prod"], indirect=True)  # the dev stack has no reader of the proxy (no cAdvisor)
def test_no_reader_of_the_socket_proxy_finds_a_secret_in_any_container(dev):
    """Every container inspected through the socket proxy, as cAdvisor reads it (where the stack has a reader;
    before the health tests below stop the apps, the proxy's haproxy among them):
    Config.Env names the secret files, and no secret value (the files the host step wrote) is anywhere in it."""
    import sys

    from test_engine_socket_proxy import REQUEST

    sources = {m["source"] for c in dev.containers.values() for m in c["mounts"] if m["target"] == "/run/secrets"}
    files = [p for source in sources for p in Path(str(dev.target.host_root) + source).iterdir()]
    values = {p.read_text() for p in files}
    assert len(values) >= 2 and all(len(v) >= 8 for v in values), files
    proxy = dev.inspect("socket-proxy")
    env = dict(line.split("=", 1) for line in dev.containers["socket-proxy"]["envs"])
    assert env["CONTAINERS"] == "1", "prod's cAdvisor reads containers through the proxy"
    address = next(iter(proxy["NetworkSettings"]["Networks"].values()))["IPAddress"]
    named = 0
    for name in dev.containers:
        ident = dev.inspect(name)["Id"]
        code = REQUEST.replace("response.read(200)", "response.read()")
        done = dev.engine.netexec(sys.executable, "-c", code, address, "GET", f"/v1.41/containers/{ident}/json")
        status, _, body = done.stdout.strip().partition(" ")
        assert status == "200", (name, done.stdout[:200], done.stderr)
        config_env = json.loads(body)["Config"]["Env"]
        assert not [line for line in config_env for v in values if v in line], name
        named += sum("=/run/secrets/" in line for line in config_env)
    assert named >= len(values) - 1  # the variables name the files (one secret may be shared by two readers)


def test_health_checks_turn_unhealthy_when_their_apps_stop(dev):
    # Last in the module: it stops every app.
    _wait_all_healthy(dev)
    # Those that became healthy (any other already fails the test above with its reason).
    checked = [n for n, i in dev.containers.items() if i.get("healthcheck") and _health(dev, n) == "healthy"]
    assert checked
    for name in checked:
        # As the user the app runs as (no container here keeps CAP_KILL for another user's processes).
        user = _runs_as(name, dev.containers[name])
        stopped = dev.engine.client.containers.get(name).exec_run(
            ["sh", "-c", "kill $(pidof ${STANDIN_APP:-httpd})"], user=user
        )
        assert stopped.exit_code == 0, (name, stopped.output)
    limit = max(
        (_seconds(check["interval"]) + _seconds(check["timeout"])) * int(check["retries"])
        for check in (dev.containers[n]["healthcheck"] for n in checked)
    )
    deadline = time.monotonic() + limit + HEALTH_GRACE_S
    status = {}
    while time.monotonic() < deadline:
        status = {n: _health(dev, n) for n in checked}
        if all(s == "unhealthy" for s in status.values()):
            break
        time.sleep(3)
    assert status == dict.fromkeys(checked, "unhealthy")
