"""The swarm bootstrap and shared-storage scripts, run for real: a sandbox root per host and stand-ins for
docker, gluster and mount (tests/fakes/fake_tools.py) that keep state and refuse what the real programs
refuse. Each is applied twice (idempotent), then deleted in Pulumi's reverse order: the sandbox is back to
what it was. What only real programs can show (Raft, GlusterFS healing, kernel mounts) is listed in
docs/cluster.md."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from conftest import raw_config, require_tool
from mediastack.host.shared_storage import storage_scripts
from mediastack.host.swarm_bootstrap import (
    bootstrap_scripts,
    init_create,
    init_delete,
    join_create,
    join_delete,
    labels_create,
    labels_delete,
    member_create,
    member_delete,
    token_create,
    token_delete,
)
from mediastack.model.config import Host, HostRole
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.placement import node_labels

FAKES = Path(__file__).resolve().parent / "fakes" / "fake_tools.py"
PROGRAMS = ("docker", "gluster", "mount", "umount", "mountpoint")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "<dir>") for p in sorted(root.rglob("*"))}


class Lab:
    """A cluster of sandboxes: one root per host, shared fake state, every call logged."""

    def __init__(self, tmp_path: Path, hosts: list[str]):
        self.top = tmp_path / "lab"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for program in PROGRAMS:
            (self.bin / program).symlink_to(FAKES)
        self.state = self.top / "cluster"
        self.state.mkdir(parents=True)
        self.log = tmp_path / "calls.log"
        self.roots = {}
        for host in hosts:
            root = self.top / "hosts" / host
            (root / "etc").mkdir(parents=True)
            (root / "etc/fstab").write_text("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
            self.roots[host] = root

    def run(self, script: str, host: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "ROOT": str(self.roots[host]),
            "FAKE_CLUSTER": str(self.state),
            "FAKE_NODE": host,
            "FAKE_LOG": str(self.log),
        }
        done = subprocess.run(
            ["sh", "-c", script], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{host}: {done.stderr}\n{script}"
        return done

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture(autouse=True)
def _python() -> None:
    require_tool("python3")  # the stand-ins are Python scripts


def cluster_hosts() -> list[Host]:
    """The cluster stack's three managers and a fourth host that joins as a worker."""
    config = parse_stack_config(raw_config("cluster"), "cluster")
    worker = Host(name="node4", address="192.168.1.24", cpus=4, memory="8GiB", roles=[HostRole.worker])
    return [*config.hosts, worker]


def bootstrap_up(lab: Lab, hosts: list[Host]) -> dict[str, str]:
    """Pulumi's creation order: init, tokens, then per host its member record, join, and labels."""
    first = hosts[0]
    ids = {first.name: lab.run(init_create(first), first.name).stdout.strip()}
    tokens = {role: lab.run(token_create(role), first.name).stdout.strip() for role in ("worker", "manager")}
    for host in hosts[1:]:
        lab.run(member_create(host), first.name)
        token = tokens["manager" if HostRole.manager in host.roles else "worker"]
        ids[host.name] = lab.run(join_create(host, first), host.name, stdin=token + "\n").stdout.strip()
    for host in hosts:
        lab.run(labels_create(host), first.name, stdin=ids[host.name] + "\n")
    return ids


def bootstrap_down(lab: Lab, hosts: list[Host]) -> None:
    """Pulumi's deletion order: dependents first (labels, then each join, its member record), init last."""
    first = hosts[0]
    for host in hosts:
        lab.run(labels_delete(host), first.name)
    for host in reversed(hosts[1:]):
        lab.run(join_delete(), host.name)
        lab.run(member_delete(host), first.name)
    for _ in ("worker", "manager"):
        lab.run(token_delete(), first.name)
    lab.run(init_delete(), first.name)


def test_bootstrap_joins_labels_is_idempotent_and_leaves_cleanly(tmp_path: Path) -> None:

    hosts = cluster_hosts()
    lab = Lab(tmp_path, [h.name for h in hosts])
    before = snapshot(lab.top)
    ids = bootstrap_up(lab, hosts)
    assert ids == {h.name: f"id-{h.name}" for h in hosts}
    swarm = json.loads((lab.state / "swarm.json").read_text())
    for host in hosts:
        node = swarm["nodes"][ids[host.name]]
        assert node["status"] == "ready" and node["labels"] == node_labels(host), host.name
        assert node["manager"] is (HostRole.manager in host.roles), host.name
    assert swarm["nodes"]["id-gpu1"]["labels"]["mediastack.gpu"] == "nvidia"
    state = snapshot(lab.top)
    calls = len(lab.calls())

    assert bootstrap_up(lab, hosts) == ids  # a second run changes nothing: no second init, no second join
    assert snapshot(lab.top) == state
    # Replacing the init step (Pulumi deletes it first) must not dissolve a swarm others are still in.
    kept = lab.run(init_delete(), hosts[0].name)
    assert "left in place" in kept.stdout and snapshot(lab.top) == state
    again = lab.calls()[calls:]
    assert not [c for c in again if " swarm init" in c or " swarm join " in c]

    bootstrap_down(lab, hosts)
    assert snapshot(lab.top) == before  # no swarm, no node entries, nothing left behind
    order = [c for c in lab.calls() if " swarm leave" in c or " node rm" in c]
    # every joined host leaves (managers demoted first) before its entry is removed; the first manager last
    assert order[-1] == "gpu1 docker swarm leave --force"
    for host in hosts[1:]:
        leave = order.index(f"{host.name} docker swarm leave")
        assert order[leave + 1] == f"gpu1 docker node rm --force id-{host.name}"
    assert "node3 docker node demote id-node3" in lab.calls()
    assert "node4 docker node demote id-node4" not in lab.calls()


def test_a_wrong_token_stops_the_join(tmp_path: Path) -> None:
    hosts = cluster_hosts()[:2]
    lab = Lab(tmp_path, [h.name for h in hosts])
    lab.run(init_create(hosts[0]), hosts[0].name)
    env = {
        "PATH": f"{lab.bin}:/usr/bin:/bin",
        "FAKE_CLUSTER": str(lab.state),
        "FAKE_NODE": hosts[1].name,
    }
    done = subprocess.run(
        ["sh", "-c", join_create(hosts[1], hosts[0])],
        input="SWMTKN-1-forged\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "invalid join token" in done.stderr


def storage_config(kind: str):
    cfg = copy.deepcopy(raw_config("cluster"))
    if kind == "nfs":
        cfg["storage"] = {"kind": "nfs", "nfs": {"server": "nas.home.arpa", "export": "/export/media"}}
    elif kind == "cephfs":
        cfg["storage"] = {"kind": "cephfs", "cephfs": {"monitors": ["10.0.0.1", "10.0.0.2:6789"], "path": "/media"}}
    cfg["storage"]["mount_point"] = "/mnt/mediastack"
    return parse_stack_config(cfg, "cluster")


@pytest.mark.parametrize("kind", ["glusterfs", "nfs", "cephfs"])
def test_shared_storage_mounts_everywhere_idempotently_and_reverts(tmp_path: Path, kind: str) -> None:

    config = storage_config(kind)
    scripts = storage_scripts(config)
    hosts = [h.name for h in config.hosts]
    lab = Lab(tmp_path, hosts)
    before = snapshot(lab.top)

    def up() -> None:
        if kind == "glusterfs":
            for host in hosts:  # every cluster host has the storage role
                lab.run(scripts["brick-create.sh"], host)
            lab.run(scripts["volume-create.sh"], hosts[0])
        for host in hosts:
            lab.run(scripts["mount-create.sh"], host)

    up()
    state = snapshot(lab.top)
    up()
    assert snapshot(lab.top) == state
    mounts = json.loads((lab.state / "mounts.json").read_text())
    assert sorted(mounts) == sorted(f"{h}:{lab.roots[h]}/mnt/mediastack" for h in hosts)
    expected_type = {"glusterfs": "glusterfs", "nfs": "nfs", "cephfs": "ceph"}[kind]
    assert {m["type"] for m in mounts.values()} == {expected_type}
    for host in hosts:
        fstab = (lab.roots[host] / "etc/fstab").read_text().splitlines()
        ours = [line for line in fstab if " /mnt/mediastack " in line]
        assert len(ours) == 1 and "_netdev" in ours[0], fstab
    if kind == "glusterfs":
        gluster = json.loads((lab.state / "gluster.json").read_text())
        volume = gluster["volumes"]["mediastack"]
        assert volume["status"] == "Started" and volume["replica"] == 3
        assert volume["bricks"] == [f"{h.address}:/srv/gluster/bricks/mediastack" for h in config.hosts]
        # Only the cluster's own nodes may mount it (GlusterFS allows every address by default), over TLS with
        # their own certificates (tests/test_gluster_tls.py checks those).
        assert volume["options"] == {
            "auth.allow": "192.168.1.21,192.168.1.22,192.168.1.23",
            "client.ssl": "on",
            "server.ssl": "on",
            "auth.ssl-allow": "gpu1,node2,node3",
        }
        assert sorted(gluster["peers"]) == sorted(h.address for h in config.hosts[1:])
        assert "backup-volfile-servers=192.168.1.22:192.168.1.23" in ours[0]
        # Replacing the volume step under running services must not pull the storage away.
        kept = lab.run(scripts["volume-delete.sh"], hosts[0])
        assert "left in place" in kept.stdout and snapshot(lab.top) == state
    if kind == "nfs":
        assert ours[0].startswith("nas.home.arpa:/export/media /mnt/mediastack nfs nfsvers=4.2,hard,noatime")
    if kind == "cephfs":
        assert ours[0].startswith("10.0.0.1,10.0.0.2:6789:/media /mnt/mediastack ceph name=mediastack,secretfile=")

    for host in hosts:
        lab.run(scripts["mount-delete.sh"], host)
    if kind == "glusterfs":
        lab.run(scripts["volume-delete.sh"], hosts[0])
        for host in hosts:
            lab.run(scripts["brick-delete.sh"], host)
    assert snapshot(lab.top) == before


def test_fstab_lines_are_added_and_removed_by_their_exact_marker(tmp_path: Path) -> None:
    """The delete takes away the marker and the line under it, nothing else: not a line the user wrote that
    happens to be identical, not another comment that looks like the marker."""
    config = storage_config("nfs")
    scripts = storage_scripts(config)
    lab = Lab(tmp_path, ["node1"])
    fstab = lab.roots["node1"] / "etc/fstab"
    ours = "nas.home.arpa:/export/media /mnt/mediastack nfs nfsvers=4.2,hard,noatime,_netdev 0 0"
    theirs = [
        "UUID=0a1b / ext4 errors=remount-ro 0 1",
        "# mediastack shared storage",  # an older marker without a mount point: not ours to remove
        "nas.home.arpa:/export/other /mnt/other nfs defaults 0 0",
    ]
    fstab.write_text("\n".join(theirs) + "\n")
    lab.run(scripts["mount-create.sh"], "node1")
    assert fstab.read_text().splitlines() == [*theirs, "# mediastack shared storage: /mnt/mediastack", ours]
    lab.run(scripts["mount-delete.sh"], "node1")
    assert fstab.read_text().splitlines() == theirs

    # The same line written by the user (unmarked) is theirs: the create leaves it, and so does the delete.
    fstab.write_text("\n".join([*theirs, ours]) + "\n")
    created = lab.run(scripts["mount-create.sh"], "node1")
    assert "not ours" in created.stdout
    lab.run(scripts["mount-delete.sh"], "node1")
    assert fstab.read_text().splitlines() == [*theirs, ours]


def test_brick_data_survives_the_delete(tmp_path: Path) -> None:
    config = storage_config("glusterfs")
    scripts = storage_scripts(config)
    lab = Lab(tmp_path, ["gpu1"])
    lab.run(scripts["brick-create.sh"], "gpu1")
    film = lab.roots["gpu1"] / "srv/gluster/bricks/mediastack/data/media/movies/film.mkv"
    film.parent.mkdir(parents=True)
    film.write_text("x")
    lab.run(scripts["brick-delete.sh"], "gpu1")
    assert film.read_text() == "x"


def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    config = parse_stack_config(raw_config("cluster"), "cluster")
    scripts = {**bootstrap_scripts(config)}
    for kind in ("glusterfs", "nfs", "cephfs"):
        scripts.update({f"{kind}-{k}": v for k, v in storage_scripts(storage_config(kind)).items()})
    paths = []
    for name, content in scripts.items():
        path = tmp_path / name
        path.write_text(content)
        paths.append(str(path))
    done = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", *paths], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout
    assert len(paths) == 15 + 6 + 2 + 2


def test_stand_ins_refuse_what_the_real_programs_refuse(tmp_path: Path) -> None:
    """The checks above can fail: a second init, a mount without an fstab line, a started volume deleted."""
    lab = Lab(tmp_path, ["a"])
    env = {"PATH": f"{lab.bin}:/usr/bin:/bin", "FAKE_CLUSTER": str(lab.state), "FAKE_NODE": "a"}
    env["ROOT"] = str(lab.roots["a"])
    (lab.roots["a"] / "mnt/x").mkdir(parents=True)

    def fails(*argv: str) -> bool:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30).returncode != 0

    assert not fails("docker", "swarm", "init", "--advertise-addr", "10.0.0.1")
    assert fails("docker", "swarm", "init", "--advertise-addr", "10.0.0.1")
    assert fails("docker", "swarm", "leave")  # a manager must force it
    assert fails("mount", str(lab.roots["a"] / "mnt/x"))
    assert fails("gluster", "volume", "create", "v", "replica", "3", "h1:/b", "h2:/b", "h3:/b")  # peers not probed
    assert not fails("gluster", "peer", "probe", "h2") and not fails("gluster", "peer", "probe", "h3")
    assert not fails("gluster", "volume", "create", "v", "replica", "3", "h1:/b", "h2:/b", "h3:/b")
    assert not fails("gluster", "volume", "start", "v")
    assert fails("gluster", "volume", "delete", "v")
    assert fails("gluster", "volume", "create", "v", "replica", "3", "h1:/b", "h2:/b", "h3:/b")
