"""The host scripts over real SSH, as pulumi-command's `command:remote:Command` runs them: Debian's
openssh-server in a network namespace of its own, each `create` sent as the session's command with its
`stdin` and its environment (pulumi-command sets variables with the session's `env` request, which sshd
takes only for names in AcceptEnv), twice, then every `delete` in reverse dependency order.

ROOT, the scripts' own prefix for every path, is the one variable sent: it points them at a sandbox standing
for the host's `/`, which must end exactly as it began."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from engine_apply import REMOTE_COMMAND, cluster_node_facts, dependency_order, unsealed_plan

from conftest import ROOT, require_tool
from mediastack_cli.offline import read_stack

pytestmark = pytest.mark.engine

PORT = 2222


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | None]]:
    found: dict[str, tuple[str, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = ("dir", None) if path.is_dir() else ("file", path.read_bytes())
    return found


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    for tool in ("sshd", "ssh", "ssh-keygen", "nsenter", "ip"):
        require_tool(tool) if tool != "sshd" else (shutil.which("sshd") or require_tool("/usr/sbin/sshd"))
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd in a network namespace needs root in CI")
        pytest.skip("sshd in a network namespace needs root")
    work = tmp_path_factory.mktemp("ssh")
    netns = f"mssh{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)
    config = work / "sshd_config"
    config.write_text(
        f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nAcceptEnv ROOT\nPidFile {work / 'sshd.pid'}\n"
    )
    sshd = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            shutil.which("sshd") or "/usr/sbin/sshd",
            "-D",
            "-f",
            str(config),
            "-E",
            str(work / "sshd.log"),
        ],
    )
    try:
        yield work, netns
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def _remote(ssh_host, command: str, stdin: str, sandbox: Path) -> subprocess.CompletedProcess[str]:
    work, netns = ssh_host
    return subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "ssh",
            "-i",
            str(work / "client"),
            "-p",
            str(PORT),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            f"SetEnv=ROOT={sandbox}",
            "root@127.0.0.1",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_host_scripts_over_ssh_twice_then_deleted_leave_the_host_as_it_was(ssh_host, tmp_path):
    plan = unsealed_plan(read_stack(ROOT, "prod"))
    commands = [r for r in dependency_order(plan) if r.type == REMOTE_COMMAND]
    assert commands
    sandbox = tmp_path / "host"
    # What the host had before: settings of its own, which the scripts must keep or restore.
    (sandbox / "etc" / "docker").mkdir(parents=True)
    (sandbox / "etc" / "docker" / "daemon.json").write_text('{"debug": true}\n')
    (sandbox / "etc" / "sysctl.d").mkdir()
    (sandbox / "etc" / "sysctl.d" / "10-own.conf").write_text("vm.swappiness = 60\n")
    for directory in ("etc/systemd/system", "usr/local/sbin", "var/lib"):  # on every Debian host
        (sandbox / directory).mkdir(parents=True, exist_ok=True)
    before = _snapshot(sandbox)
    after_first: dict[str, tuple[str, bytes | None]] = {}
    for round_ in (1, 2):
        for command in commands:
            done = _remote(ssh_host, command.inputs["create"], command.inputs.get("stdin") or "", sandbox)
            assert done.returncode == 0, (round_, command.name, done.stderr[-1500:])
        if round_ == 1:
            after_first = _snapshot(sandbox)
    assert after_first != before
    second = _snapshot(sandbox)
    assert {k for k in second if second[k] != after_first.get(k)} <= {
        k for k in second if "backup" in k or k.endswith(".log")
    }
    for command in reversed(commands):
        done = _remote(ssh_host, command.inputs["delete"], "", sandbox)
        assert done.returncode == 0, (command.name, done.stderr[-1500:])
    left = _snapshot(sandbox)
    # Kept on purpose: the first-start files are the apps' state once written (the seeds step's delete says
    # so), and the backup repository's password outlives the tool (docs/backups.md); with their directories.
    kept_files = [
        k for k, (kind, _) in left.items() if kind == "file" and k.startswith(("srv/", "var/lib/mediastack/restic/"))
    ]
    assert any(k.endswith("restic/password") for k in kept_files)
    kept = {str(parent) for k in kept_files for parent in Path(k).parents} | set(kept_files)
    changed = sorted(k for k in left if left[k] != before.get(k) and k not in kept)
    assert changed == [], "\n".join(changed)


# --- The cluster's host scripts: swarm bootstrap and shared storage, each host a real Docker engine.

STAND_IN_PROGRAMS = ("gluster", "mount", "umount", "mountpoint")  # no GlusterFS here, no mount in a sandbox
FAKES = Path(__file__).resolve().parent / "fakes" / "fake_tools.py"


def _cluster_sshd(ssh_host, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """An sshd standing for one cluster host: its sessions' `docker` reaches that host's node engine
    (DOCKER_HOST) and the stand-ins come first on PATH (SetEnv: set by sshd in every session)."""
    work, netns = ssh_host
    setenv = " ".join(f'"{k}={v}"' for k, v in env.items())
    config = work / f"sshd_config_{port}"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nAcceptEnv ROOT\nPidFile {work / f'sshd{port}.pid'}\n"
        f"SetEnv {setenv}\n"
    )
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", sshd, "-D", "-f", str(config), "-E", str(work / f"sshd{port}.log")]
    )


def _remote_at(ssh_host, port: int, command: str, stdin: str, sandbox: Path) -> subprocess.CompletedProcess[str]:
    work, netns = ssh_host
    options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "ConnectTimeout=10"]
    return subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "ssh",
            "-i",
            str(work / "client"),
            "-p",
            str(port),
            *[word for option in options for word in ("-o", option)],
            "-o",
            f"SetEnv=ROOT={sandbox}",
            "root@127.0.0.1",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _swarm_state(nodes) -> dict[str, tuple[str, str, dict[str, str]]]:
    """Per node: its swarm state, its node id, and (on a manager) the labels the swarm holds for it."""
    state = {}
    for node in nodes.nodes:
        info = node.client.api.info()["Swarm"]
        state[node.name] = (info["LocalNodeState"], info["NodeID"], {})
    manager = next((n for n in nodes.nodes if n.client.api.info()["Swarm"]["ControlAvailable"]), None)
    if manager:
        for listed in manager.client.nodes.list():
            name = listed.attrs["Description"]["Hostname"]
            if name in state and state[name][1] == listed.attrs["ID"]:
                state[name] = (state[name][0], state[name][1], listed.attrs["Spec"].get("Labels") or {})
    return state


@pytest.mark.multinode
def test_cluster_host_scripts_over_ssh_form_the_swarm_twice_then_leave_every_host_as_it_was(
    ssh_host, docker_engine, tmp_path
):
    import dataclasses
    import json

    import swarm_nodes

    import dockerd

    try:
        nodes = swarm_nodes.start_nodes(docker_engine, ["gpu1", "node2", "node3"], tmp_path / "nodes", prefix="ssh")
    except dockerd.EngineUnavailable as error:
        swarm_nodes.unavailable(str(error))
    sshds = []
    try:
        files = read_stack(ROOT, "cluster")
        hosts = json.loads(files.config["mediastack:hosts"])
        address = {n.name: n.address for n in nodes.nodes}
        for host in hosts:
            host["address"] = address[host["name"]]
        config = {**files.config, "mediastack:hosts": json.dumps(hosts)}
        plan = unsealed_plan(dataclasses.replace(files, config=config))
        commands = [r for r in dependency_order(plan) if r.type == REMOTE_COMMAND]
        by_urn = {r.urn: r for r in plan.resources}
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for program in STAND_IN_PROGRAMS:
            (bin_dir / program).symlink_to(FAKES)
        fake_state, calls = tmp_path / "fake-cluster", tmp_path / "calls.log"
        fake_state.mkdir()
        port = {n.name: PORT + 1 + i for i, n in enumerate(nodes.nodes)}
        for node in nodes.nodes:
            env = {
                "DOCKER_HOST": f"unix://{node.socket}",
                "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "FAKE_CLUSTER": str(fake_state),
                "FAKE_NODE": node.name,
                "FAKE_LOG": str(calls),
            }
            sshds.append(_cluster_sshd(ssh_host, port[node.name], env))
        time.sleep(1)
        host_of = {
            r.name: next(h["name"] for h in hosts if h["address"] == r.inputs["connection"]["host"]) for r in commands
        }
        sandboxes = {h["name"]: tmp_path / "hosts" / h["name"] for h in hosts}
        for sandbox in sandboxes.values():
            # What a node has before the stack: Docker's, systemd's and OpenSSL's directories, GlusterFS installed.
            for directory in (
                "etc/docker", "etc/sysctl.d", "etc/systemd/system", "usr/local/sbin", "var/lib", "etc/ssl",
                "var/lib/glusterd",
            ):  # fmt: skip
                (sandbox / directory).mkdir(parents=True, exist_ok=True)
            (sandbox / "etc" / "fstab").write_text("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
        before = {name: _snapshot(sandbox) for name, sandbox in sandboxes.items()}
        swarm_before = _swarm_state(nodes)
        assert {s for s, _, _ in swarm_before.values()} == {"inactive"}

        def stdin_of(command, outputs: dict[str, str]) -> str:
            """The plan's stdin, or where the program wires a step's stdout into it (mediastack/host/swarm_bootstrap.py:
            a join reads its token, a labels step the node id its join or the init printed);
            the mocks leave those empty."""
            wired = [by_urn[d].name for d in command.dependencies if d in by_urn]
            if command.name.endswith("-join"):
                return next(outputs[w] for w in wired if "-token-" in w)
            if command.name.endswith("-labels"):
                source = [w for w in wired if w.endswith("-join")] or [w for w in wired if w.endswith("-init")]
                return outputs[source[0]]
            return command.inputs.get("stdin") or ""

        from conftest import raw_config
        from mediastack.host import shared_storage
        from mediastack.model.config import StackConfig

        stack_config = StackConfig.model_validate({**raw_config("cluster"), "hosts": hosts})
        by_host = {h.name: h for h in stack_config.hosts}

        def create_of(command, outputs: dict[str, str]) -> str:
            """The plan's create script, or, for the GlusterFS TLS steps, the script the program builds from the
            earlier steps' stdout (each node's request; the CA's signatures), which the mocks leave empty."""
            if command.name.endswith("-tls-ca"):
                prefix = command.name.removesuffix("-tls-ca")
                requests = {h: outputs[f"{prefix}-{h}-tls-key"] for h in by_host}
                return shared_storage.tls_sign_script(stack_config, requests)
            host = host_of[command.name]
            if command.name.endswith(f"-{host}-tls"):
                signer = command.name.removesuffix(f"-{host}-tls") + "-tls-ca"
                signed = shared_storage.signed_certificates(outputs[signer])
                return shared_storage.tls_install_script(by_host[host], signed)
            return command.inputs["create"]

        rounds = []
        for round_ in (1, 2):
            outputs: dict[str, str] = {}
            for command in commands:
                host = host_of[command.name]
                done = _remote_at(
                    ssh_host, port[host], create_of(command, outputs), stdin_of(command, outputs), sandboxes[host]
                )
                assert done.returncode == 0, (round_, command.name, done.stderr[-1500:])
                outputs[command.name] = done.stdout
            rounds.append(({n: _snapshot(s) for n, s in sandboxes.items()}, _swarm_state(nodes), outputs))
        (files1, swarm1, out1), (files2, swarm2, out2) = rounds
        # Formed once: every host active in one swarm, labelled with its host's labels (the plan's own record).
        labels = {h["name"]: h["labels"] for h in cluster_node_facts(plan)}
        assert {n: (s, lab) for n, (s, _, lab) in swarm1.items()} == {n: ("active", labels[n]) for n in labels}
        managers = nodes.nodes[0].client.nodes.list()
        assert sorted(m.attrs["Spec"]["Role"] for m in managers) == ["manager"] * 3
        assert swarm2 == swarm1  # the second round joined nothing again, relabelled to the same
        assert out2["media-swarm-init"] == out1["media-swarm-init"]  # the same node id: no second init
        log = calls.read_text().splitlines()
        creates = [line for line in log if " gluster --mode=script volume create " in line]
        assert len(creates) == 1, creates  # the second round found the volume
        assert "replica 3" in creates[0] and all(
            f"{a}:/srv/gluster/bricks/mediastack" in creates[0] for a in address.values()
        )
        assert sorted(line.split()[0] for line in log if line.split()[1] == "mount") == sorted(address)
        for name in sandboxes:
            assert files1[name] != before[name]
            changed = {k for k in files2[name] if files2[name][k] != files1[name].get(k)}
            assert {k for k in changed if "backup" not in k and not k.endswith(".log")} == set(), (name, changed)
        # Deleted in reverse order: the swarm dissolved, the volume gone, every host as it was.
        for command in reversed(commands):
            host = host_of[command.name]
            done = _remote_at(ssh_host, port[host], command.inputs["delete"], "", sandboxes[host])
            assert done.returncode == 0, (command.name, done.stderr[-1500:])
        assert {n: s for n, (s, _, _) in _swarm_state(nodes).items()} == {n: "inactive" for n in address}
        assert sorted(p.name for p in fake_state.iterdir()) == []  # no volume, no peer, nothing mounted
        for name, sandbox in sandboxes.items():
            left = _snapshot(sandbox)
            kept_files = [
                k
                for k, (kind, _) in left.items()
                # kept on purpose: the data, the backup repository, the cluster's CA (docs/security.md)
                if kind == "file"
                and k.startswith(("srv/", "var/lib/mediastack/restic/", "var/lib/mediastack/gluster-ca/"))
            ]
            kept = {str(parent) for k in kept_files for parent in Path(k).parents} | set(kept_files)
            changed_left = sorted(k for k in left if left[k] != before[name].get(k) and k not in kept)
            assert changed_left == [], (name, changed_left)
    finally:
        for sshd in sshds:
            sshd.terminate()
            sshd.wait(timeout=10)
        nodes.stop()
