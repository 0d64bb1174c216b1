"""Downloads behind a VPN: the topology under mocks, and the host's kill switch on a real kernel."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CONTAINER,
    container_labels,
    containers,
    plan_config,
    raw_config,
    require_root,
    require_tool,
    traefik_dynamic,
)
from mediastack.host.vpn_guard import guard_scripts
from mediastack.model.config import StackConfig
from mediastack_cli.offline import PlanResult, Registration, StackMocks
from netlab import Lab

KEY = "wg-private-key-that-must-stay-secret="


def vpn_config(**vpn: Any) -> dict[str, Any]:
    cfg = raw_config("prod")
    cfg["downloads"]["vpn"] = {"provider": "protonvpn", "wireguard_private_key": KEY, **vpn}
    return cfg


@functools.cache
def vpn_plan() -> PlanResult:
    return plan_config(vpn_config(port_forwarding=True, server_countries=["Netherlands"]), stack="vpn")


def test_download_clients_share_the_vpn_namespace_and_nothing_else() -> None:
    c = containers(vpn_plan())
    gluetun = c["gluetun"]
    assert gluetun["capabilities"]["adds"] == ["NET_ADMIN"]
    assert [d["hostPath"] for d in gluetun["devices"]] == ["/dev/net/tun"]
    nets = {n["name"]: n for n in gluetun["networksAdvanced"]}
    assert set(nets) == {"mediastack-frontend", "mediastack-backend", "mediastack-downloads"}
    assert nets["mediastack-downloads"]["gwPriority"] == 100  # the tunnel leaves through the shaped bridge
    assert set(nets["mediastack-backend"]["aliases"]) == {"gluetun", "qbittorrent", "sabnzbd"}
    for client in ("qbittorrent", "sabnzbd"):
        inputs = c[client]
        assert inputs["networkMode"] == f"container:{registered(vpn_plan())['gluetun'].id}"
        assert not inputs.get("networksAdvanced") and not inputs.get("hostname") and not inputs.get("ports")
        assert not any(k.startswith("traefik.") for k in container_labels(inputs))
        test = inputs["healthcheck"]["tests"]
        assert test[0] == "CMD-SHELL" and "127.0.0.1:8000" in test[1] and "kill 1" in test[1]
    assert not any(k.startswith("traefik.") for k in container_labels(gluetun))
    # The clients' routes keep their names: the VPN container answers to them on the frontend network.
    assert set(nets["mediastack-frontend"]["aliases"]) == {"gluetun", "qbittorrent", "sabnzbd"}
    http = traefik_dynamic(vpn_plan())["http"]
    assert http["services"]["qbittorrent"]["loadBalancer"]["servers"] == [{"url": "http://qbittorrent:8090"}]
    assert http["services"]["sabnzbd"]["loadBalancer"]["servers"] == [{"url": "http://sabnzbd:8080"}]


def registered(result: PlanResult) -> dict[str, Registration]:
    return {r.inputs["name"]: r for r in result.resources if r.type == CONTAINER}


def test_the_clients_name_gluetun_by_its_id_and_follow_its_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker stores `container:<id>` and the provider reads that back (network_mode is ForceNew): the clients'
    input is gluetun's id, so a gluetun replaced (a new id) replaces them, and they join the new namespace."""
    first = registered(vpn_plan())
    gluetun = first["gluetun"]
    assert gluetun.id.startswith("media-gluetun-container-")  # the id the mocks gave the container
    for client in ("qbittorrent", "sabnzbd"):
        assert first[client].inputs["networkMode"] == f"container:{gluetun.id}", client
        assert first[client].property_dependencies["networkMode"] == (gluetun.urn,), client

    mocked = StackMocks.new_resource

    def replaced(self: StackMocks, args: Any) -> tuple[str, dict[str, Any]]:
        ident, state = mocked(self, args)
        return (f"{ident}-replaced" if args.name == gluetun.name else ident), state

    monkeypatch.setattr(StackMocks, "new_resource", replaced)
    again = registered(plan_config(vpn_config(port_forwarding=True, server_countries=["Netherlands"]), stack="vpn"))
    assert again["gluetun"].id == f"{gluetun.id}-replaced"
    for client in ("qbittorrent", "sabnzbd"):
        assert again[client].inputs["networkMode"] == f"container:{gluetun.id}-replaced", client


def test_vpn_credentials_stay_secret() -> None:
    env = containers(vpn_plan())["gluetun"]["envs"]
    # gluetun reads the key from the file its *_SECRETFILE variable names; the host step writes it from stdin.
    assert "WIREGUARD_PRIVATE_KEY_SECRETFILE=/run/secrets/vpn-wireguard-private-key" in env
    assert not any(line.startswith("WIREGUARD_PRIVATE_KEY=") for line in env), env
    assert KEY not in json.dumps([r.inputs for r in vpn_plan().resources])


def test_forwarded_port_is_handed_to_qbittorrent() -> None:
    from mediastack.plan.resolve import resolve

    stack = resolve(StackConfig.model_validate(vpn_config(port_forwarding=True)), "vpn")
    env = stack.get("gluetun").env
    assert env["VPN_PORT_FORWARDING"] == "on"
    assert "{{PORTS}}" in env["VPN_PORT_FORWARDING_UP_COMMAND"]
    assert "127.0.0.1:8090/api/v2/app/setPreferences" in env["VPN_PORT_FORWARDING_UP_COMMAND"]
    assert env["FIREWALL_INPUT_PORTS"] == "8090,8080"


def test_host_guard_runs_with_the_vpn() -> None:
    commands = {r.name: r for r in vpn_plan().resources if r.type == "command:remote:Command"}
    guard = commands["media-nas-tuning-vpn-guard"]
    assert "\nPORT=51820\nPROTOCOLS=udp\n" in guard.inputs["create"]
    assert "mediastack-vpn-guard clear" in guard.inputs["delete"]


def ruleset(tool: str, tmp_path: Path) -> str:
    """The nftables ruleset `apply` loads, read by a stand-in nft that keeps what it is fed."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nft").write_text('#!/bin/sh\nif [ "$1" = -f ]; then cat > "$RULES"; fi\n')
    (fake / "nft").chmod(0o755)
    rules = tmp_path / "rules.nft"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "RULES": str(rules)}
    subprocess.run(["sh", "-c", tool, "vpn-guard", "apply"], env=env, check=True, capture_output=True)
    return rules.read_text()


def test_openvpn_guard_allows_its_port_over_udp_and_tcp(tmp_path: Path) -> None:
    cfg = vpn_config(type="openvpn", wireguard_private_key=None, openvpn_user="u", openvpn_password="p")
    rules = ruleset(guard_scripts(StackConfig.model_validate(cfg))["vpn-guard.sh"], tmp_path)
    assert 'oifname != "ms-downloads" meta l4proto { udp, tcp } th dport 1194 accept' in rules


def test_guard_names_the_vpn_servers_when_the_config_does(tmp_path: Path) -> None:
    cfg = vpn_config(endpoints=["185.65.135.10", "185.65.134.0/24", "2a03:1b20:1:f011::/64"])
    rules = ruleset(guard_scripts(StackConfig.model_validate(cfg))["vpn-guard.sh"], tmp_path).splitlines()
    accepted = [line.strip() for line in rules if line.strip().endswith("accept") and "dport" in line]
    assert accepted == [
        'iifname "ms-downloads" oifname != "ms-downloads" ip daddr { 185.65.135.10, 185.65.134.0/24 } '
        "meta l4proto udp th dport 51820 accept",
        'iifname "ms-downloads" oifname != "ms-downloads" ip6 daddr { 2a03:1b20:1:f011::/64 } '
        "meta l4proto udp th dport 51820 accept",
    ]
    # Without servers in the config: the port to any address (the residual docs/security.md names).
    rules = ruleset(guard_scripts(StackConfig.model_validate(vpn_config()))["vpn-guard.sh"], tmp_path).splitlines()
    accepted = [line.strip() for line in rules if line.strip().endswith("accept") and "dport" in line]
    assert accepted == ['iifname "ms-downloads" oifname != "ms-downloads" meta l4proto udp th dport 51820 accept']


def test_one_server_is_the_one_gluetun_connects_to() -> None:
    from mediastack.plan.resolve import resolve

    env = resolve(StackConfig.model_validate(vpn_config(endpoints=["185.65.135.10/32"])), "vpn").get("gluetun").env
    assert env["OPENVPN_ENDPOINT_IP"] == "185.65.135.10"
    for several in (["185.65.135.10", "185.65.135.11"], ["185.65.134.0/24"], []):
        env = resolve(StackConfig.model_validate(vpn_config(endpoints=several)), "vpn").get("gluetun").env
        assert "OPENVPN_ENDPOINT_IP" not in env, several


@pytest.mark.parametrize(
    ("endpoints", "provider", "words"),
    [
        (["185.65.135.10;x"], "mullvad", ["'185.65.135.10;x' is not a VPN server address", "185.65.135.0/24"]),
        (["185.65.135.1/24"], "mullvad", ["host bits zero"]),
        (["fe80::1%eth0"], "mullvad", ["not a VPN server address"]),
        (["$(id)"], "mullvad", ["not a VPN server address"]),
        (["185.65.135.10\n"], "mullvad", ["not a VPN server address"]),
        (["0.0.0.0/0"], "mullvad", ["every address", "leave endpoints out"]),
        ([], "custom", ["provider custom has no server list", "downloads.vpn.endpoints"]),
    ],
)
def test_endpoints_grammar(endpoints: list[str], provider: str, words: list[str]) -> None:
    from mediastack.plan.loading import ConfigError, parse_stack_config

    cfg = vpn_config(endpoints=endpoints, provider=provider)
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(cfg, "prod")
    lines = [line for line in str(caught.value).splitlines() if "mediastack:downloads.vpn" in line]
    assert len(lines) == 1 and all(w in lines[0] for w in words), str(caught.value)


def test_guard_scripts_pass_shellcheck_and_install_exactly(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    scripts = guard_scripts(StackConfig.model_validate(vpn_config()))
    for name, text in scripts.items():
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
            done = subprocess.run([shellcheck, "-s", "sh", str(tmp_path / name)], capture_output=True, text=True)
            assert done.returncode == 0, f"{name}:\n{done.stdout}"
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/local/sbin").mkdir(parents=True)
    env = {**os.environ, "ROOT": str(root)}
    before = sorted(str(p) for p in root.rglob("*"))
    for _ in range(2):
        subprocess.run(["sh", "-c", scripts["vpn-guard-create.sh"]], env=env, check=True, capture_output=True)
    assert (root / "usr/local/sbin/mediastack-vpn-guard").read_text() == scripts["vpn-guard.sh"]
    subprocess.run(["sh", "-c", scripts["vpn-guard-delete.sh"]], env=env, check=True, capture_output=True)
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_guard_units_pass_systemd_analyze_and_the_timer_runs_the_rejoin(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    scripts = guard_scripts(StackConfig.model_validate(vpn_config()))
    root = tmp_path / "root"
    # systemd's own units (the targets the units order themselves after) in the sandbox root, then the stack's.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    subprocess.run(["sh", "-c", scripts["vpn-guard-create.sh"]], env={**os.environ, "ROOT": str(root)}, check=True)
    units = root / "etc/systemd/system"
    names = ["mediastack-vpn-guard.service", "mediastack-vpn-rejoin.service", "mediastack-vpn-rejoin.timer"]
    assert sorted(p.name for p in units.iterdir()) == names
    for name in names:
        assert (units / name).read_text() == scripts[name]
    done = subprocess.run(
        [analyze, "verify", f"--root={root}", *(str(units / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rejoin = scripts["mediastack-vpn-rejoin.service"]
    assert "ExecStart=/usr/local/sbin/mediastack-vpn-guard rejoin\n" in rejoin and "After=docker.service\n" in rejoin
    assert "OnUnitActiveSec=30s\n" in scripts["mediastack-vpn-rejoin.timer"]
    # On a host (no ROOT) the create step starts the timer; the delete step stops it before restoring the files.
    assert "systemctl enable --quiet --now mediastack-vpn-rejoin.timer" in scripts["vpn-guard-create.sh"]
    assert "systemctl disable --quiet --now mediastack-vpn-rejoin.timer" in scripts["vpn-guard-delete.sh"]


def test_rejoin_waits_for_a_healthy_vpn_container_and_starts_only_clients_whose_start_failed(tmp_path: Path) -> None:
    """The rejoin's choices against a stand-in `docker` that answers as the engine does (the real engine:
    tests/test_engine_vpn.py)."""
    tool = guard_scripts(StackConfig.model_validate(vpn_config()))["vpn-guard.sh"]
    fake = tmp_path / "bin"
    fake.mkdir()
    # docker inspect answers from files named after the container; `ps` lists what the filter file holds; `start`
    # is recorded.
    (fake / "docker").write_text(
        """#!/bin/sh
case "$1" in
  inspect) eval "last=\\${$#}"; cat "$STATE/$last" 2>/dev/null || exit 1 ;;
  ps) echo "$*" > "$STATE/ps-args"; cat "$STATE/exited" ;;
  start) echo "$2" >> "$STATE/started" ;;
esac
"""
    )
    (fake / "docker").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "STATE": str(state)}

    def run(vpn: str | None, clients: dict[str, str]) -> tuple[str, list[str]]:
        for f in state.iterdir():
            f.unlink()
        if vpn is not None:
            (state / "gluetun").write_text(vpn + "\n")
        (state / "exited").write_text("".join(f"{c}\n" for c in clients))
        for c, facts in clients.items():
            (state / c).write_text(facts + "\n")
        done = subprocess.run(["sh", "-c", tool, "vpn-guard", "rejoin"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        started = (state / "started").read_text().split() if (state / "started").exists() else []
        return done.stdout, started

    failed = "/qbittorrent container:abc running failed"
    assert run(None, {"c1": failed}) == ("vpn-guard: no container gluetun: nothing to rejoin\n", [])
    said, started = run("abc exited unhealthy", {"c1": failed})
    assert (said, started) == (
        "vpn-guard: gluetun is exited (health: unhealthy): no client started until it is healthy\n",
        [],
    )
    said, started = run("abc running starting", {"c1": failed})
    assert started == [] and "gluetun is running (health: starting)" in said
    said, started = run(
        "abc running healthy",
        {
            "c1": "/qbittorrent container:abc unless-stopped failed",
            "c2": "/sabnzbd container:abc unless-stopped stopped",  # a user's `docker stop`
            "c3": "/old container:0ld unless-stopped failed",  # the namespace of a gluetun since replaced
            "c4": "/once container:abc no failed",  # not meant to come back
            "c5": "/named container:gluetun unless-stopped failed",
        },
    )
    assert started == ["c1", "c5"], said
    assert said.splitlines() == [
        "vpn-guard: started qbittorrent in gluetun's namespace (its restart had failed while gluetun was down)",
        "vpn-guard: started named in gluetun's namespace (its restart had failed while gluetun was down)",
    ]
    # Only exited containers labelled as download clients are asked about.
    assert (state / "ps-args").read_text().split() == [
        "ps", "--all", "--quiet", "--no-trunc", "--filter", "label=mediastack.role=download_client", "--filter",
        "status=exited",
    ]  # fmt: skip


# -- the kill switch on a real kernel --------------------------------------------------------------------


VPN_PORT = 51820


def reaches(lab: Lab, kind: str, port: int = 0, addr: str = "10.201.4.2") -> bool:
    """Whether a process in the download namespace gets through to the internet namespace."""
    if kind == "ping":
        done = subprocess.run(
            ["ip", "netns", "exec", lab.ns("dl"), "ping", "-n", "-c", "1", "-W", "1", addr], capture_output=True
        )
        return done.returncode == 0
    return _sent_and_received(lab, ["wan", LISTEN, kind, str(port), addr], [kind, addr, str(port)])


def _sent_and_received(lab: Lab, listener_argv: list[str], sender_argv: list[str]) -> bool:
    """A listener (namespace, script, arguments) waits for one datagram or connection that SEND makes from the
    download namespace; whether it got there."""
    namespace, script, *args = listener_argv
    listener = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns(namespace), "python3", "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        subprocess.run(
            ["ip", "netns", "exec", lab.ns("dl"), "python3", "-c", SEND, *sender_argv], capture_output=True, timeout=10
        )
        out, _ = listener.communicate(timeout=10)
        return out.strip() == "got"
    finally:
        listener.kill()


# Bounded: one datagram or one connection, two seconds at most.
LISTEN = """
import socket, sys
kind, port, addr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
if kind == "tcp":
    s.listen(1)
s.settimeout(2)
print("ready", flush=True)
try:
    if kind == "udp":
        s.recvfrom(100)
    else:
        s.accept()
    print("got")
except socket.timeout:
    print("nothing")
"""
SEND = """
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(1.5)
try:
    if kind == "udp":
        s.sendto(b"x", (addr, port))
    else:
        s.connect((addr, port))
except OSError:
    pass
"""


@pytest.fixture(scope="module")
def lab():
    for tool in ("ip", "nft", "ping"):
        require_tool(tool)
    require_root("network namespaces need root")
    with Lab(line_up=1_000_000_000, line_down=1_000_000_000) as built:
        yield built


def tunnel(lab: Lab, up: bool) -> None:
    """A UDP tunnel (VXLAN on the VPN port) from the download namespace to a VPN server on the internet side,
    standing in for WireGuard, which this kernel lacks; it crosses the host's forwarding and masquerade."""
    dl, wan = lab.ns("dl"), lab.ns("wan")
    if up:
        for ns, local, remote, inner in (
            (dl, "10.201.1.2", "10.201.4.2", "10.99.0.2"),
            (wan, "10.201.4.2", "10.201.3.1", "10.99.0.1"),
        ):
            ip = ["ip", "-n", ns]
            ports = ["dstport", str(VPN_PORT), "srcport", str(VPN_PORT), str(VPN_PORT + 1)]
            vxlan = ["type", "vxlan", "id", "7", "local", local, "remote", remote, *ports]
            subprocess.run([*ip, "link", "add", "tun0", *vxlan], check=True)
            subprocess.run([*ip, "addr", "add", f"{inner}/24", "dev", "tun0"], check=True)
            subprocess.run([*ip, "link", "set", "tun0", "up"], check=True)
    else:
        subprocess.run(["ip", "-n", dl, "link", "set", "tun0", "down"], check=True)


def test_kill_switch_lets_only_the_tunnel_out(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    tool = guard_scripts(StackConfig.model_validate(vpn_config()))["vpn-guard.sh"]
    # Control: without the guard, a namespace whose tunnel is down still has Docker's default route out.
    assert reaches(lab, "ping") and reaches(lab, "tcp", 8443) and reaches(lab, "udp", 5353)

    first = lab.run_script(tool, "apply")
    assert first.returncode == 0 and first.stdout.startswith("vpn-guard: applied"), first.stderr
    assert lab.run_script(tool, "apply").stdout.strip() == "vpn-guard: unchanged"

    tunnel(lab, up=True)
    assert reaches(lab, "ping", addr="10.99.0.1"), "the tunnel itself must pass the guard"
    tunnel(lab, up=False)
    results = {
        "ping": reaches(lab, "ping"),
        "tcp 8443": reaches(lab, "tcp", 8443),
        "tcp 443": reaches(lab, "tcp", 443),
        "udp 53": reaches(lab, "udp", 53),
        "through the downed tunnel": reaches(lab, "ping", addr="10.99.0.1"),
    }
    with capsys.disabled():
        print(f"\n  kill switch, tunnel down: {results}")
    assert not any(results.values()), results

    cleared = lab.run_script(tool, "clear")
    assert cleared.stdout.strip() == "vpn-guard: cleared"
    assert "mediastack_vpn_guard" not in lab.nft_tables()
    assert reaches(lab, "tcp", 8443)


OTHER_ADDR = "10.201.4.3"  # a second address on the internet side: not the VPN server


def test_kill_switch_lets_the_vpn_port_out_only_to_the_vpn_server(lab: Lab) -> None:
    """With `downloads.vpn.endpoints`, the VPN port passes to the named server and to nothing else."""
    subprocess.run(["ip", "-n", lab.ns("wan"), "addr", "replace", f"{OTHER_ADDR}/24", "dev", "w0"], check=True)
    # A port of its own: the VXLAN stand-in of the test above holds UDP 51820 in the internet namespace.
    port = 51900
    named = guard_scripts(StackConfig.model_validate(vpn_config(endpoint_port=port, endpoints=["10.201.4.2"])))
    anywhere = guard_scripts(StackConfig.model_validate(vpn_config(endpoint_port=port)))["vpn-guard.sh"]
    try:
        # Control: the port-only guard lets the VPN port out to any address.
        assert lab.run_script(anywhere, "apply").returncode == 0
        assert reaches(lab, "udp", port, "10.201.4.2") and reaches(lab, "udp", port, OTHER_ADDR)
        applied = lab.run_script(named["vpn-guard.sh"], "apply")
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "vpn-guard: applied (only udp port 51900 to 10.201.4.2 leaves ms-downloads)"
        assert reaches(lab, "udp", port, "10.201.4.2"), "the VPN server must stay reachable"
        assert not reaches(lab, "udp", port, OTHER_ADDR), "the VPN port to another address"
        assert not reaches(lab, "tcp", 443, "10.201.4.2"), "another port to the VPN server"
    finally:
        lab.run_script(named["vpn-guard.sh"], "clear")
        subprocess.run(["ip", "-n", lab.ns("wan"), "addr", "del", f"{OTHER_ADDR}/24", "dev", "w0"], check=False)


HOST_LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(2)
print("ready", flush=True)
try:
    s.accept()
    print("got")
except socket.timeout:
    print("nothing")
"""


def reaches_host(lab: Lab, addr: str, port: int) -> bool:
    """Whether a process in the download namespace reaches a service of the host itself (a proxy, a resolver)."""
    return _sent_and_received(lab, ["host", HOST_LISTEN, addr, str(port)], ["tcp", addr, str(port)])


def test_kill_switch_closes_the_way_through_the_host(lab: Lab) -> None:
    """L7: the forward rules alone let a client reach the host's own services (a proxy or resolver there is a
    way out past the tunnel); the guard lets only the host's replies in from the bridge."""
    tool = guard_scripts(StackConfig.model_validate(vpn_config()))["vpn-guard.sh"]
    assert reaches_host(lab, "10.201.1.1", 3128) and reaches_host(lab, "10.201.3.1", 3128)  # control
    try:
        assert lab.run_script(tool, "apply").returncode == 0
        assert not reaches_host(lab, "10.201.1.1", 3128), "the bridge's own address"
        assert not reaches_host(lab, "10.201.3.1", 3128), "the host's uplink address"
    finally:
        lab.run_script(tool, "clear")


def test_guard_is_in_place_before_docker_and_stays_when_stopped() -> None:
    """L7: at boot the rules exist before Docker starts a download client, and `systemctl stop` does not
    open the switch (only the stack's delete step clears it)."""
    unit = guard_scripts(StackConfig.model_validate(vpn_config()))["mediastack-vpn-guard.service"]
    lines = unit.splitlines()
    assert "Before=docker.service network-pre.target" in lines
    assert not [line for line in lines if line.startswith("After=") and "docker" in line]
    assert not [line for line in lines if line.startswith("ExecStop")]
    delete = guard_scripts(StackConfig.model_validate(vpn_config()))["vpn-guard-delete.sh"]
    assert "/usr/local/sbin/mediastack-vpn-guard clear" in delete
